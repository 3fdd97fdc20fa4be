"""Live: dagster-webserver + dagster-daemon on a PostgreSQL instance, driven over GraphQL.

* the change sensor picks up rows the warehouse's change feed writes and they reach the catalog
  without anyone clicking;
* a backfill whose run fails (a day of invalid rows): `blade demo` names the run's own cause;
* yesterday is late (the stack's data ends in June): the freshness checks fail and their alert
  reaches a webhook receiver;
* the warehouse goes down: the change sensors' ticks fail and the daemon's health sensor posts
  one alert per sensor at most (grouped per tick) to a webhook receiver; the warehouse comes
  back and a "cleared" alert follows.

A small stack (a few thousand rows a source): the terminate + re-execute cases, which need
days big enough to stop mid-upload, have a stack of their own (``test_live_terminate.py``).
The lake is on the loopback S3 API (moto's server), as there.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from blade_pipeline.cli import demo
from blade_pipeline.config.sources import source_for
from blade_pipeline_tests.alert_sinks import WEBHOOK_SECRET, Receiver
from blade_pipeline_tests.conftest import CATALOG_TOKEN, END_DATE, WAREHOUSE_TOKEN, make_bucket
from blade_pipeline_tests.live_stack import (
    LiveStack,
    live_dagster,
)

pytestmark = pytest.mark.slow

SMALL_ROWS = 6_000
RANGE = [(END_DATE - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1)]  # ~2k rows a day


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    webhook = Receiver()
    yield webhook
    webhook.close()


@pytest.fixture(scope="module")
def stack(start_warehouse, start_catalog, pg_dagster_home, pg_url, s3_server, tmp_path_factory,
          receiver) -> Iterator[LiveStack]:
    """Warehouse, catalog, S3 lake, webserver + daemon on PostgreSQL; sensors every 3 s, a
    warehouse call retried once (a dead warehouse fails a tick in ~2 s, not ~11 s)."""
    warehouse = start_warehouse(SMALL_ROWS, "--days", "3")
    catalog = start_catalog()
    lake_uri = make_bucket(s3_server, "blade-live") + "/lake"
    with live_dagster(warehouse, catalog, pg_dagster_home, pg_url,
                      tmp_path_factory.mktemp("live"), lake_uri=lake_uri,
                      s3_endpoint=s3_server.base_url, source_rows=SMALL_ROWS, source_days=3,
                      BLADE_SENSOR_INTERVAL_SECONDS="3", BLADE_WAREHOUSE_MAX_RETRIES="1",
                      BLADE_ALERT_INTERVAL_SECONDS="3", BLADE_ALERT_WEBHOOK_URL=receiver.url
                      ) as live:
        yield live


def test_change_sensor_brings_new_rows_to_the_catalog(stack):
    warehouse, catalog = stack.warehouse, stack.catalog
    deadline = time.monotonic() + 120  # the sensor's first tick records the watermark
    while time.monotonic() < deadline and not stack.gql.sensor_cursor("blade_sortie_changes"):
        time.sleep(1)
    inserted = warehouse.query_arrow(
        "INSERT INTO main.blade.blade_sortie_data BY NAME SELECT * EXCEPT (sortie_id, "
        "last_modified), lpad(CAST(900000000 + row_number() OVER (ORDER BY sortie_id) AS "
        "STRING), 9, '0') AS sortie_id, current_timestamp() AS last_modified "
        "FROM (SELECT * FROM main.blade.blade_sortie_data "
        "WHERE status = 'COMPLETED' AND mission_type = 'TRAINING' AND flight_hours >= 0 "
        "AND sortie_id IS NOT NULL ORDER BY sortie_id LIMIT 5)")
    assert inserted.column(0)[0].as_py() == 5
    ids = [f"SORTIE-{900000000 + n}" for n in range(1, 6)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(catalog.lookup(ids)) < len(ids):
        time.sleep(2)
    assert sorted(catalog.lookup(ids)) == ids, "new warehouse rows never reached the catalog"
    # the items are in: the run still reconciles the day (its check after the upload)
    deadline = time.monotonic() + 120
    while not any(r["status"] == "SUCCESS"
                  for r in stack.gql.runs({"blade/trigger": "change-sensor"})):
        assert time.monotonic() < deadline, "the change sensor's run never succeeded"
        time.sleep(1)


def _wait_for(receiver: Receiver, status: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in receiver.bodies if b["kind"] == "tick_failure"
                 and b["status"] == status]
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"no {status} tick alert in {timeout}s: {receiver.bodies}")


def test_a_failed_backfill_is_reported_with_its_runs_own_cause(stack, capsys):
    """What `blade demo` says of a backfill that ends failed: the run's own failure (here a
    day whose rows are all invalid), read from Dagster over GraphQL, and the other days
    uploaded."""
    source = source_for("readiness")
    bad = dt.date.fromisoformat(RANGE[1])
    stack.warehouse.query_arrow(
        "UPDATE main.blade.blade_readiness_data SET status = 'BROKEN' "
        "WHERE CAST(last_modified AS DATE) = :day", {"day": bad})
    try:
        backfill = demo.launch_backfill(stack.base_url, source, RANGE)
        assert not demo.wait_for_backfills(stack.base_url, stack.catalog_server.base_url,
                                           CATALOG_TOKEN, [backfill], time.perf_counter(),
                                           timeout_s=300)
    finally:
        stack.warehouse.query_arrow(
            "UPDATE main.blade.blade_readiness_data SET status = 'FMC' "
            "WHERE CAST(last_modified AS DATE) = :day AND status = 'BROKEN'", {"day": bad})
    printed = capsys.readouterr().out
    assert "1 backfill(s) failed:" in printed
    cause = next(line for line in printed.splitlines() if f"backfill {backfill}, run" in line)
    assert "(FAILURE)" in cause and f"1 of 3 days were not uploaded (the other 2 were): " \
        f"{RANGE[1]}: invalid_fraction" in cause, cause
    state, runs = demo.backfill_state(stack.base_url, backfill)
    assert state == "failed" and [r["status"] for r in runs] == ["FAILURE"]


def test_a_late_day_reaches_the_webhook(stack, receiver):
    """The stack's data ends in June: by the real clock yesterday is late for every type, so
    the daemon's freshness sensor fails the checks and the health sensor posts them."""
    deadline = time.monotonic() + 120
    while True:
        late = [b for b in receiver.bodies if b["kind"] == "check_failure"
                and "check freshness of blade/" in b["title"]]
        if late:
            break
        assert time.monotonic() < deadline, f"no freshness alert: {receiver.bodies}"
        time.sleep(1)
    body = late[0]
    assert body["status"] == "firing" and "is late: not " in body["cause"]
    assert body["url"].endswith("?view=checks") and "run the day" in body["action"]
    assert body["days"] == (dt.datetime.now(dt.UTC) - dt.timedelta(
        hours=27)).date().isoformat()  # due by 03:00 UTC: the day before


def test_a_warehouse_outage_alerts_then_clears(stack, receiver):
    """Last in the module: it stops the warehouse."""
    receiver.bodies.clear()
    stack.warehouse_server.stop()
    try:
        firing = _wait_for(receiver, "firing", 120)
    finally:
        stack.warehouse_server.start("/healthz", timeout=300)
    body = firing[0]
    assert "_changes" in body["title"] and "failing" in body["title"], body
    assert "change sensor: cannot ask the warehouse for changes" in body["cause"]
    assert "/sensors/blade_" in body["url"] and "nothing to re-run" in body["action"]
    cleared = _wait_for(receiver, "cleared", 120)
    assert cleared[0]["cause"].startswith("was: ")
    fired = [b["title"] for b in receiver.bodies if b["status"] == "firing"]
    for sensor in ("maintenance", "sortie", "supply", "readiness"):  # no storm: once each
        assert sum(f"blade_{sensor}_changes" in t for t in fired) <= 1, fired
    everything = str(receiver.bodies)
    assert WAREHOUSE_TOKEN not in everything and WEBHOOK_SECRET not in everything
