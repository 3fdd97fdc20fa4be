"""The ad-hoc query job and the single-item job against the real mock services."""

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from blade_pipeline.defs.jobs import blade_item_job, blade_query_job
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, END_DATE, WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.expectations import readiness_ids_to_ask

ROWS = 5_000


@pytest.fixture(scope="module")
def res(start_warehouse, start_catalog, tmp_path_factory):
    warehouse = start_warehouse(ROWS, "--invalid-fraction", "0.05")
    catalog = start_catalog()
    return {"warehouse": DatabricksWarehouse(url=warehouse_url(warehouse), token=WAREHOUSE_TOKEN),
            "catalog": CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN),
            "lake": ParquetLake(uri=str(tmp_path_factory.mktemp("lake")))}


def query_config(**config) -> dict:
    return {"ops": {"run_query": {"config": config}}}


def test_query_job_ingests_the_filtered_rows(res):
    result = blade_query_job.execute_in_process(
        run_config=query_config(data_type="maintenance", where="priority = 'HIGH'", limit=400),
        resources=res)
    assert result.success
    lake: ParquetLake = res["lake"]
    staged = pq.read_table(lake.path("queries", result.run_id, "items", "part-0.parquet"))
    assert 0 < staged.num_rows <= 400
    assert all('"priority":"HIGH"' in d for d in staged.column("data").to_pylist())
    known = res["catalog"].lookup(staged.column("item_id"))
    assert known == dict(zip(staged.column("item_id").to_pylist(),
                             staged.column("content_hash").to_pylist(), strict=True))
    output = result.output_for_node("run_query")
    assert output == {"staged": staged.num_rows, "uploaded": staged.num_rows}


@pytest.mark.parametrize(("where", "reason"), [
    ("1=1; DROP TABLE main.blade.blade_maintenance_data", "';' is not allowed"),
    ("priority = 'HIGH' -- and more", "comments are not allowed"),
    ("1=1) UNION SELECT * FROM x WHERE (1=1", "unbalanced"),
])
def test_query_job_rejects_unsafe_filters(res, where, reason):
    result = blade_query_job.execute_in_process(
        run_config=query_config(data_type="maintenance", where=where), resources=res,
        raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "filter rejected" in message and reason in message


def test_item_job_reports_per_item_and_skips_unchanged(res):
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, ROWS, 7, end=END_DATE, invalid_fraction=0.05, schema="blade")
    ids, bad_key = readiness_ids_to_ask(con)
    config = {"ops": {"ingest_item_ids": {"config": {"data_type": "readiness", "item_ids": ids}}}}
    first = blade_item_job.execute_in_process(run_config=config, resources=res)
    report = first.output_for_node("ingest_item_ids")
    assert [report[i]["status"] for i in ids[:3]] == ["created"] * 3
    assert report["READY-999999999"]["status"] == "not found in warehouse"
    assert report[f"READY-{bad_key}"]["status"] == "invalid"
    assert "status: isin" in report[f"READY-{bad_key}"]["reason"]
    second = blade_item_job.execute_in_process(run_config=config, resources=res)
    again = second.output_for_node("ingest_item_ids")
    assert [again[i]["status"] for i in ids[:3]] == ["unchanged"] * 3
    assert res["catalog"].get(ids[0])["version"] == 1


def test_item_job_refuses_ids_of_another_type(res):
    config = {"ops": {"ingest_item_ids": {"config": {"data_type": "readiness",
                                                     "item_ids": ["MAINT-000000001"]}}}}
    result = blade_item_job.execute_in_process(run_config=config, resources=res,
                                               raise_on_error=False)
    assert not result.success
    messages = [e.event_specific_data.error.message for e in result.all_events
                if e.event_type_value == "STEP_FAILURE"]
    assert "READY-<report_id>" in messages[0]


def test_partition_jobs_exist_for_every_source():
    from blade_pipeline.definitions import defs

    for data_type in ("maintenance", "sortie", "supply", "readiness"):
        job = defs.resolve_job_def(f"blade_{data_type}_job")
        assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
