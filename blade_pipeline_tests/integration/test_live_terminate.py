"""Live, terminate + re-execute: a range run (three days in one run) is terminated mid-upload
(pause) and re-executed from failure (resume); the catalog ends with exactly the staged items,
each at version 1 (no loss, no double upload) — from the Databricks warehouse, from PostgreSQL,
from MariaDB (a ``kind: mysql`` source the stack's BLADE_SOURCES_FILE adds) and from a dropped CSV
file (whose range run the landing sensor launches).

The stack: dagster-webserver + dagster-daemon on a PostgreSQL instance, ~40k rows a day and a
catalog slowed to 150 ms a request, so that an upload can be stopped halfway; its lake on the
loopback S3 API (moto's server), where the checkpoints that pause and resume rest on are S3
objects (the browser tests' stack keeps a local lake).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import duckdb
import pytest

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline_tests.conftest import END_DATE, make_bucket
from blade_pipeline_tests.live_stack import (
    LiveStack,
    assert_catalog_holds_exactly_the_staged_items,
    live_dagster,
)

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # ~1 min a kind

BIG_ROWS = 120_000
RANGE = [(END_DATE - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1)]  # ~40k rows a day


@pytest.fixture(scope="module")
def stack(start_warehouse, start_catalog, pg_dagster_home, pg_url, s3_server,
          tmp_path_factory) -> Iterator[LiveStack]:
    """Warehouse (one big partition), slow catalog, S3 lake, the MariaDB source added,
    webserver + daemon on PostgreSQL."""
    warehouse = start_warehouse(BIG_ROWS, "--days", "3")
    catalog = start_catalog("--latency-ms", "150")
    lake_uri = make_bucket(s3_server, "blade-live-terminate") + "/lake"
    with live_dagster(warehouse, catalog, pg_dagster_home, pg_url,
                      tmp_path_factory.mktemp("live"), lake_uri=lake_uri,
                      s3_endpoint=s3_server.base_url, source_rows=BIG_ROWS, source_days=3,
                      mysql_source=True, BLADE_SENSOR_INTERVAL_SECONDS="3") as live:
        yield live


@pytest.mark.parametrize("data_type", ["maintenance", "maintenance_unit_b", "maintenance_unit_c",
                                       "supply_drops"],
                         ids=["databricks", "postgres", "mysql", "csv"])
def test_terminate_mid_upload_then_reexecute_from_failure_is_exact(stack, data_type):
    """The same range, from the mock Databricks warehouse, from the PostgreSQL source, from
    the MariaDB source and from a CSV drop (there the landing sensor launches the range run of
    the file's days)."""
    gql, lake = stack.gql, stack.lake
    if data_type == "supply_drops":
        run_id = _drop_and_wait_for_its_staging_run(stack, "supply-range.csv")
    else:
        run_id = gql.launch_range_run(f"blade_{data_type}_job", RANGE[0], RANGE[-1])
    checkpoints = [lake.checkpoint_path(data_type, day) for day in RANGE]

    def saved() -> list[dict]:
        return [_read_checkpoint(lake, path) for path in checkpoints]

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if sum(len(s["acknowledged"]) for s in saved()) >= 2:
            break
        assert gql.status(run_id) not in {"SUCCESS", "FAILURE"}, "upload finished too fast"
        time.sleep(0.2)
    gql.terminate(run_id)  # "pause"
    assert gql.wait_status(run_id, {"CANCELED"}) == "CANCELED"
    paused = saved()
    staged = [lake.parquet_file(lake.partition_dir(data_type, day)).metadata.num_rows
              for day in RANGE]
    assert all(n > 5_000 for n in staged), staged  # (supply rows lean to the latest day)
    assert 0 < sum(s["processed"] for s in paused) < sum(staged)

    resumed = gql.reexecute_from_failure(run_id)  # "resume"
    assert gql.wait_status(resumed, {"SUCCESS"}, timeout=300) == "SUCCESS"
    for final, rows in zip(saved(), staged, strict=True):
        assert final["processed"] == final["total"] == rows
    assert_catalog_holds_exactly_the_staged_items(stack, data_type, *RANGE)


def _drop_and_wait_for_its_staging_run(stack: LiveStack, name: str) -> str:
    """Drop a CSV of BIG_ROWS generated supply rows over RANGE (written aside, then renamed,
    as a careful producer does); the landing sensor lands it, then launches one range run of
    its days: that run's id."""
    con = duckdb.connect()
    generator.seed(con, BIG_ROWS, 7, end=END_DATE, days=len(RANGE), schema="blade")
    folder = stack.landing / "supply"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{name}.part"
    con.execute(f"COPY blade.{generator.TABLES['supply']} TO '{part}' (HEADER, DELIMITER ',')")
    part.rename(folder / name)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for run in stack.gql.runs({"blade/landed_files": name}):
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert (tags["dagster/asset_partition_range_start"],
                    tags["dagster/asset_partition_range_end"]) == (RANGE[0], RANGE[-1])
            return run["runId"]
        time.sleep(0.5)
    raise AssertionError(f"the landing sensor never launched the staging run of {name}")


def _read_checkpoint(lake, path: str) -> dict:
    """A checkpoint as the run left it. Read while the run replaces it, moto's server can
    answer a torn body (S3 itself never does: CopyObject replaces a key atomically): then the
    read is repeated."""
    for _ in range(10):
        try:
            return lake.read_json(path) or {"acknowledged": [], "processed": 0, "total": 0}
        except json.JSONDecodeError:
            time.sleep(0.05)
    raise AssertionError(f"{path} never read whole")
