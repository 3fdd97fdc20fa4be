"""Case 13: real failures reach a person. Runs fail for real (a refused warehouse token, a
failed blocking check, a backfill failing twice) on the PostgreSQL instance; the failure sensor
is evaluated on each failed run as the daemon would, and delivers to an HTTP receiver and an
SMTP sink (aiosmtpd) started here. What arrives names the data type, the day, the run's link,
the cause and what to do, and never a secret; a backfill's second failure sends nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.ops.alerts import AlertSender, build_failure_alert_sensor
from blade_pipeline_tests.alert_sinks import WEBHOOK_SECRET, Receiver, Sink
from blade_pipeline_tests.conftest import CATALOG_TOKEN, WAREHOUSE_TOKEN
from blade_pipeline_tests.faults.conftest import DAY, make_resources, run
from blade_pipeline_tests.servers import free_port

SENSOR = build_failure_alert_sensor()


@pytest.fixture
def channels() -> Iterator[tuple[Receiver, Sink, int]]:
    receiver, sink, port = Receiver(), Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield receiver, sink, port
    finally:
        controller.stop()
        receiver.close()


@pytest.fixture
def refused(fault_warehouse, start_catalog, lake_dir) -> dict:
    """Resources whose warehouse token is refused: every run fails at its first query."""
    return make_resources(fault_warehouse, start_catalog(), lake_dir,
                          warehouse_token="wrong-warehouse-token-5e1f")


def evaluate(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult,
             alerts: AlertSender) -> None:
    """The failure sensor's evaluation of a failed run, as the daemon's tick runs it."""
    [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    context = dg.build_run_status_sensor_context(
        sensor_name=SENSOR.name, dagster_event=failure, dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), resources={"alerts": alerts})
    SENSOR(context.for_run_failure())


def senders(receiver: Receiver, port: int, webhook_format: str = "json") -> AlertSender:
    return AlertSender(webhook_url=receiver.url, webhook_format=webhook_format,
                       smtp_host="127.0.0.1", smtp_port=port, smtp_to="ops@example.org, "
                       "oncall@example.org")


def test_13a_a_refused_token_reaches_the_webhook_and_the_mailbox(
        refused, dagster_instance, recorded, channels):
    receiver, sink, port = channels
    result = run(source_for("sortie"), refused, dagster_instance, recorded)
    assert not result.success
    evaluate(dagster_instance, result, senders(receiver, port))
    # a second failure event of the same run (run monitoring and the code server can both
    # fail a run whose worker died) sends nothing more
    evaluate(dagster_instance, result, senders(receiver, port))
    assert dagster_instance.get_run_by_id(result.run_id).tags["blade/alerted"] == result.run_id
    [body] = receiver.bodies
    assert body["kind"] == "run_failure" and body["data_type"] == "sortie"
    assert body["days"] == DAY and body["run_id"] == result.run_id
    assert body["url"].endswith(f"/runs/{result.run_id}")
    assert body["cause"].startswith("[sortie] Databricks SQL warehouse")
    assert "refused the access token" in body["cause"]
    assert "re-execute the run from failure" in body["action"]
    [mail] = sink.messages
    assert mail["Subject"] == f"[blade] {body['title']}"
    assert mail["To"] == "ops@example.org, oncall@example.org"
    text = mail.get_payload(decode=True).decode()
    assert body["cause"] in text and body["url"] in text
    everything = json.dumps(receiver.bodies) + text
    for secret in ("wrong-warehouse-token-5e1f", WAREHOUSE_TOKEN, CATALOG_TOKEN, WEBHOOK_SECRET):
        assert secret not in everything


def test_13b_a_failed_blocking_check_says_which_check_and_where_to_look(
        fault_warehouse, start_catalog, lake_dir, dagster_instance, recorded, channels):
    receiver, sink, port = channels
    strict = source_for("readiness").model_copy(update={"max_invalid_fraction": 0.0,
                                                         "invalid_rows_allowed": 0})
    result = run(strict, make_resources(fault_warehouse, start_catalog(), lake_dir),
                 dagster_instance, recorded)
    assert not result.success
    evaluate(dagster_instance, result, senders(receiver, port, "slack"))
    [body] = receiver.bodies  # Slack's incoming-webhook format
    assert set(body) == {"text", "blocks"}
    text = body["blocks"][0]["text"]["text"]
    assert "blocking check invalid_fraction failed for " + DAY in text
    assert "rows quarantined" in text and "lake/readiness/quarantine/date=" in text
    assert f"/runs/{result.run_id}|Run {result.run_id[:8]}>" in text
    [mail] = sink.messages
    assert "blocking check invalid_fraction failed" in mail.get_payload(decode=True).decode()


def test_13c_a_backfill_failing_twice_alerts_once(refused, dagster_instance, channels):
    receiver, sink, port = channels
    backfill = {"dagster/backfill": f"bf{free_port()}"}
    results = [dg.materialize(build_blade_assets(source_for("supply")), resources=refused,
                              partition_key=day, instance=dagster_instance, tags=backfill,
                              raise_on_error=False)
               for day in ("2026-06-27", "2026-06-28")]
    assert not any(r.success for r in results)
    alerts = senders(receiver, port)
    for result in reversed(results):  # whatever order the sensor meets them in
        evaluate(dagster_instance, result, alerts)
    [body] = receiver.bodies
    assert body["run_id"] == results[0].run_id and body["days"] == "2026-06-27"
    assert f"backfill {backfill['dagster/backfill']}" in body["title"]
    assert len(sink.messages) == 1


def test_13d_no_channel_configured_sends_nothing_and_says_so(
        refused, dagster_instance, recorded, channels):
    receiver, sink, _ = channels
    result = run(source_for("maintenance"), refused, dagster_instance, recorded)
    evaluate(dagster_instance, result, AlertSender())
    assert receiver.bodies == [] and sink.messages == []

