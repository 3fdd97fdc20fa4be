"""BLADE assets end to end with dg.materialize against the real mock warehouse and catalog."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import default_sources, source_for
from blade_pipeline.defs.assets import build_blade_assets, catalog_key, staged_key
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import (
    CATALOG_TOKEN,
    END_DATE,
    WAREHOUSE_TOKEN,
    warehouse_url,
)
from blade_pipeline_tests.expectations import expected_ids, materialization

ROWS = 150_000
INVALID = 0.03
DAY = (END_DATE - dt.timedelta(days=1)).isoformat()  # a Monday


@pytest.fixture(scope="module")
def warehouse_server(start_warehouse):
    return start_warehouse(ROWS, "--invalid-fraction", str(INVALID))


@pytest.fixture(scope="module")
def reference():
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, ROWS, 7, end=END_DATE, invalid_fraction=INVALID, schema="blade")
    return con


def resources(warehouse_server, catalog_server, lake_dir, catalog_token=CATALOG_TOKEN):
    return {
        "warehouse": DatabricksWarehouse(url=warehouse_url(warehouse_server),
                                         token=WAREHOUSE_TOKEN),
        "catalog": CatalogClient(base_url=catalog_server.base_url, token=catalog_token,
                                 backoff_base_s=0.05, backoff_max_s=0.5),
        "lake": ParquetLake(uri=str(lake_dir)),
    }


def run(source, res, day=DAY, instance=None):
    return dg.materialize(build_blade_assets(source), partition_key=day, resources=res,
                          instance=instance, raise_on_error=False)


def catalog_ids(client: CatalogClient, data_source: str) -> list[str]:
    ids, after = [], None
    while True:
        page = client.list_items(data_source, after=after, limit=1000)
        ids += [item["item_id"] for item in page["items"]]
        after = page.get("next")
        if not after:
            return ids


@pytest.fixture(scope="module")
def catalog_server(start_catalog):
    return start_catalog()


@pytest.fixture(scope="module")
def first_runs(warehouse_server, catalog_server, tmp_path_factory, dagster_instance):
    """Every data type materialized once for DAY (staged, checks, catalog), recorded in the
    PostgreSQL-backed instance."""
    lake_dir = tmp_path_factory.mktemp("lake")
    res = resources(warehouse_server, catalog_server, lake_dir)
    return {s.data_type: run(s, res, instance=dagster_instance)
            for s in default_sources() if s.kind == "databricks"}, res


@pytest.mark.parametrize("data_type", ["maintenance", "sortie", "supply", "readiness"])
def test_every_data_type_reaches_the_catalog_exactly(first_runs, reference, data_type):
    results, res = first_runs
    source = source_for(data_type)
    result = results[data_type]
    assert result.success
    staged = materialization(result, staged_key(source))
    uploaded = materialization(result, catalog_key(source))
    expected = expected_ids(reference, data_type, DAY)
    assert len(expected) > 100
    in_catalog = catalog_ids(res["catalog"], source.catalog_data_source)
    assert len(in_catalog) == len(set(in_catalog)) == len(expected)
    assert set(in_catalog) == expected
    assert staged["rows_valid"] == len(expected) == uploaded["created"]
    assert staged["rows_quarantined"] == staged["rows_extracted"] - staged["rows_valid"] > 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"schema_conforms": True, "invalid_fraction": True, "schema_changed": True}


def test_invalid_rows_are_quarantined_with_a_reason(first_runs):
    _, res = first_runs
    lake: ParquetLake = res["lake"]
    source = source_for("maintenance")
    table = pq.read_table(lake.partition_dir("maintenance", DAY, "quarantine") + "/part-0.parquet")
    reasons = table.column("_reason").to_pylist()
    assert table.num_rows > 0 and all(reasons)
    joined = " ".join(reasons)
    assert any(word in joined for word in ("isin", "str_matches", "not_nullable",
                                           "greater_than_or_equal_to", "duplicate primary key"))
    staged = pq.read_table(lake.partition_dir("maintenance", DAY) + "/part-0.parquet")
    rejected_ids = {f"{source.item_id_prefix}-{key}" for key, reason in
                    zip(table.column("record_id").to_pylist(), reasons, strict=True)
                    if key is not None and "duplicate" not in reason}
    assert rejected_ids and rejected_ids.isdisjoint(staged.column("item_id").to_pylist())


def test_runs_are_recorded_in_the_postgres_instance(first_runs, dagster_instance):
    results, _ = first_runs
    for result in results.values():
        record = dagster_instance.get_run_by_id(result.run_id)
        assert record is not None and record.status == dg.DagsterRunStatus.SUCCESS
    assert type(dagster_instance.run_storage).__name__ == "PostgresRunStorage"
    event = dagster_instance.get_latest_materialization_event(
        catalog_key(source_for("supply")))
    assert event is not None and event.asset_materialization.partition == DAY


def test_rematerializing_unchanged_uploads_nothing(first_runs, dagster_instance):
    _, res = first_runs
    result = run(source_for("maintenance"), res, instance=dagster_instance)
    assert result.success
    uploaded = materialization(result, catalog_key(source_for("maintenance")))
    assert (uploaded["created"], uploaded["updated"]) == (0, 0)
    assert uploaded["unchanged"] == uploaded["items_total"] > 0


def test_changing_n_rows_uploads_exactly_n(first_runs, warehouse_server):
    _, res = first_runs
    source = source_for("sortie")
    warehouse: DatabricksWarehouse = res["warehouse"]
    changed = warehouse.query_arrow(
        "UPDATE main.blade.blade_sortie_data SET base = base || ' (moved)' "
        "WHERE sortie_id IN (SELECT sortie_id FROM main.blade.blade_sortie_data "
        "WHERE CAST(last_modified AS DATE) = :day AND status = 'COMPLETED' "
        "AND mission_type = 'TRAINING' AND flight_hours >= 0 ORDER BY sortie_id LIMIT 4)",
        {"day": dt.date.fromisoformat(DAY)})
    assert changed.column(0)[0].as_py() == 4
    result = run(source, res)
    assert result.success
    uploaded = materialization(result, catalog_key(source))
    assert (uploaded["created"], uploaded["updated"]) == (0, 4)


def test_failing_blocking_check_stops_the_upload(warehouse_server, start_catalog, tmp_path):
    strict = source_for("readiness").model_copy(update={"max_invalid_fraction": 0.0})
    catalog_server = start_catalog()
    res = resources(warehouse_server, catalog_server, tmp_path)
    result = run(strict, res)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["invalid_fraction"] is False
    assert not any(e.event_type_value == "ASSET_MATERIALIZATION"
                   and e.event_specific_data.materialization.asset_key == catalog_key(strict)
                   for e in result.all_events)
    assert catalog_ids(res["catalog"], strict.catalog_data_source) == []


def test_wrong_catalog_token_fails_clearly_without_retries(warehouse_server, catalog_server,
                                                           tmp_path):
    res = resources(warehouse_server, catalog_server, tmp_path, catalog_token="not-the-token")
    started = time.perf_counter()
    result = run(source_for("supply"), res)
    assert not result.success
    assert time.perf_counter() - started < 30
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1 and failures[0].step_key.endswith("catalog")
    message = str(failures[0].event_specific_data.error.message)
    assert "[supply]" in message and "403" in message and "invalid bearer token" in message
    assert "not-the-token" not in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
