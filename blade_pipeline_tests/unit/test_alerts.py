"""Alert delivery failures name the channel, never its secret; unconfigured is off."""

import dagster as dg
import pytest

from blade_pipeline.ops.alerts import WILL_RETRY_TAG, Alert, AlertError, AlertSender, will_retry

ALERT = Alert(title="[supply] blade_supply_job failed for 2026-06-29", data_type="supply",
              days="2026-06-29", run_id="0123456789abcdef", url="http://ui/runs/0123",
              cause="[supply] catalog refused the token", action="re-run")


def test_an_undeliverable_alert_names_the_channels_but_not_the_secrets():
    sender = AlertSender(webhook_url="http://127.0.0.1:9/hooks/T00/B00/s3cr3t-path",
                         smtp_host="127.0.0.1", smtp_port=9, smtp_to="ops@example.org",
                         smtp_user="bot", smtp_password="mail-pa55", timeout_s=1.0)
    with pytest.raises(AlertError) as caught:
        sender.send(ALERT)
    message = str(caught.value)
    assert "webhook: ConnectError" in message and "email via 127.0.0.1:9" in message
    assert "s3cr3t-path" not in message and "mail-pa55" not in message
    assert "s3cr3t-path" not in repr(sender) and "mail-pa55" not in repr(sender)


def test_unconfigured_means_off():
    assert not AlertSender().enabled and AlertSender().channels() == []


def test_the_generic_body_holds_what_a_person_needs():
    body = ALERT.as_json()
    assert {"data_type", "days", "url", "cause", "action", "title", "kind", "status"} <= set(body)
    assert ALERT.as_slack()["text"].startswith(ALERT.title)


def test_problems_starting_in_one_tick_go_out_as_one_alert_and_clear_as_one():
    from blade_pipeline.ops.health_alerts import Problem, _grouped

    problems = [Problem(kind="tick_failure", what=f"sensor blade_{t}_changes", data_type=t,
                        day="-", cause=f"[{t}] change sensor: cannot ask the warehouse",
                        url=f"http://ui/sensors/blade_{t}_changes", action="fix it")
                for t in ("sortie", "supply")]
    firing = _grouped(problems, "firing")
    assert firing.title == ("2 failing: sensor blade_sortie_changes, "
                            "sensor blade_supply_changes")
    assert firing.cause == "[sortie] change sensor: cannot ask the warehouse (and 1 more)"
    assert (firing.data_type, firing.status, firing.action) == ("sortie,supply", "firing",
                                                                "fix it")
    cleared = _grouped(problems[:1], "cleared")
    assert cleared.title == "[sortie] sensor blade_sortie_changes recovered"
    assert cleared.cause.startswith("was: ") and cleared.action == "nothing to do"
    assert cleared.as_email("a@x", ["b@x"])["Subject"].startswith("[blade] RESOLVED: ")
    assert ":large_green_circle:" in cleared.as_slack()["blocks"][0]["text"]["text"]
    assert _grouped([], "firing") is None


@pytest.mark.parametrize(("max_retries", "stored_tag", "expected"), [
    (2, None, True), (0, None, False), (2, "false", False), (0, "true", True)],
    ids=["untagged-retries-left", "untagged-no-retries", "stored-false", "stored-true"])
def test_will_retry_when_the_sensor_sees_the_run_before_dagster_tags_it(
        max_retries, stored_tag, expected):
    """Dagster tags a failed run ``dagster/will_retry`` just after storing its failure: a tick
    in between holds an untagged snapshot; the answer comes from the stored run, else from
    Dagster's own retry rule."""
    overrides = {"run_retries": {"enabled": True, "max_retries": max_retries}}
    with dg.instance_for_test(overrides=overrides) as instance:
        tags = {WILL_RETRY_TAG: stored_tag} if stored_tag else {}
        stored = instance.add_run(dg.DagsterRun(
            job_name="blade_maintenance_job", status=dg.DagsterRunStatus.FAILURE, tags=tags))
        snapshot = dg.DagsterRun(job_name=stored.job_name, run_id=stored.run_id,
                                 status=dg.DagsterRunStatus.FAILURE)
        assert will_retry(instance, snapshot) is expected
