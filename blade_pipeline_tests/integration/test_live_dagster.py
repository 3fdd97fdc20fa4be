"""Live: dagster-webserver + dagster-daemon on a PostgreSQL instance, driven over GraphQL.

* the change sensor picks up rows the warehouse's change feed writes and they reach the catalog
  without anyone clicking;
* a partition run is terminated mid-upload (pause) and re-executed from failure (resume): the
  catalog ends with exactly the staged items, each at version 1 (no loss, no double upload).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import pytest

from blade_pipeline.resources.catalog import CatalogClient
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.resources.warehouse import DatabricksWarehouse
from blade_pipeline_tests.conftest import (
    CATALOG_TOKEN,
    END_DATE,
    REPO_ROOT,
    WAREHOUSE_TOKEN,
    warehouse_url,
)
from blade_pipeline_tests.dagster_gql import DagsterGraphQL
from blade_pipeline_tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.slow

BIG_DAY = (END_DATE - dt.timedelta(days=1)).isoformat()
BIG_ROWS = 120_000


@pytest.fixture(scope="module")
def stack(start_warehouse, start_catalog, pg_dagster_home, pg_url, tmp_path_factory):
    """Warehouse (one big partition), slow catalog, webserver + daemon on PostgreSQL."""
    warehouse = start_warehouse(BIG_ROWS, "--days", "1")
    catalog = start_catalog("--latency-ms", "150")
    lake_dir = tmp_path_factory.mktemp("live_lake")
    env = {"DAGSTER_HOME": str(pg_dagster_home), "DAGSTER_PG_URL": pg_url,
           "BLADE_WAREHOUSE_URL": warehouse_url(warehouse), "DATABRICKS_TOKEN": WAREHOUSE_TOKEN,
           "BLADE_CATALOG_URL": catalog.base_url, "BLADE_CATALOG_TOKEN": CATALOG_TOKEN,
           "BLADE_LAKE_URI": str(lake_dir), "BLADE_SENSOR_INTERVAL_SECONDS": "3"}
    logs = tmp_path_factory.mktemp("live_logs")
    bin_dir = Path(sys.executable).parent  # the venv's dagster-webserver / dagster-daemon
    port = free_port()
    web = ServerProcess([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                         "-w", str(REPO_ROOT / "workspace.yaml")], port, logs / "web.log")
    daemon = ServerProcess([str(bin_dir / "dagster-daemon"), "run", "-w",
                            str(REPO_ROOT / "workspace.yaml")], port, logs / "daemon.log")
    web.start("/server_info", timeout=180, env=env)
    daemon.start("/server_info", timeout=60, env=env)  # readiness: the webserver's port
    try:
        yield {"gql": DagsterGraphQL(web.base_url), "lake": ParquetLake(uri=str(lake_dir)),
               "catalog": CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN),
               "warehouse": DatabricksWarehouse(url=warehouse_url(warehouse),
                                                token=WAREHOUSE_TOKEN),
               "daemon": daemon, "web": web}
    finally:
        daemon.stop(timeout=30)
        web.stop(timeout=30)


def test_change_sensor_brings_new_rows_to_the_catalog(stack):
    warehouse: DatabricksWarehouse = stack["warehouse"]
    catalog: CatalogClient = stack["catalog"]
    deadline = time.monotonic() + 120  # the sensor's first tick records the watermark
    while time.monotonic() < deadline and not stack["gql"].sensor_cursor("blade_sortie_changes"):
        time.sleep(1)
    inserted = warehouse.query_arrow(
        "INSERT INTO main.blade.blade_sortie_data SELECT * REPLACE ("
        "lpad(CAST(900000000 + row_number() OVER () AS VARCHAR), 9, '0') AS sortie_id, "
        "now()::TIMESTAMP AS last_modified) FROM (SELECT * FROM main.blade.blade_sortie_data "
        "WHERE status = 'COMPLETED' AND mission_type = 'TRAINING' AND flight_hours >= 0 "
        "AND sortie_id IS NOT NULL ORDER BY sortie_id LIMIT 5)")
    assert inserted.column(0)[0].as_py() == 5
    ids = [f"SORTIE-{900000000 + n}" for n in range(1, 6)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(catalog.lookup(ids)) < len(ids):
        time.sleep(2)
    assert sorted(catalog.lookup(ids)) == ids, "new warehouse rows never reached the catalog"
    sensor_runs = stack["gql"].runs({"blade/trigger": "change-sensor"})
    assert any(r["status"] == "SUCCESS" for r in sensor_runs)


def test_terminate_mid_upload_then_reexecute_from_failure_is_exact(stack):
    gql: DagsterGraphQL = stack["gql"]
    lake: ParquetLake = stack["lake"]
    catalog: CatalogClient = stack["catalog"]
    run_id = gql.launch_partition_run("blade_maintenance_job", BIG_DAY)
    checkpoint = lake.checkpoint_path("maintenance", BIG_DAY)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        saved = lake.read_json(checkpoint)
        if saved and len(saved["acknowledged"]) >= 2:
            break
        assert gql.status(run_id) not in {"SUCCESS", "FAILURE"}, "upload finished too fast"
        time.sleep(0.2)
    gql.terminate(run_id)  # "pause"
    assert gql.wait_status(run_id, {"CANCELED"}) == "CANCELED"
    paused = lake.read_json(checkpoint)
    staged = lake.parquet_file(lake.partition_dir("maintenance", BIG_DAY)).metadata.num_rows
    assert 0 < paused["processed"] < staged

    resumed = gql.reexecute_from_failure(run_id)  # "resume"
    assert gql.wait_status(resumed, {"SUCCESS"}, timeout=300) == "SUCCESS"
    final = lake.read_json(checkpoint)
    assert final["processed"] == final["total"] == staged
    items, after = [], None
    while True:
        page = catalog.list_items("BLADE:maintenance", after=after, limit=1000)
        items += page["items"]
        after = page.get("next")
        if not after:
            break
    staged_ids = lake.parquet_file(lake.partition_dir("maintenance", BIG_DAY)).read(
        columns=["item_id"]).column(0).to_pylist()
    assert sorted(i["item_id"] for i in items) == sorted(staged_ids)  # no loss, no extra
    assert {i["version"] for i in items} == {1}  # nothing uploaded twice with a new version
