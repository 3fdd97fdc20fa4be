"""DatabricksWarehouse (the Dagster resource) against the mock warehouse."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.sources.reader import (
    SourceAuthError,
    SourceQueryError,
    SourceUnavailableError,
)
from blade_pipeline_tests.conftest import BIG_ROWS, WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.servers import free_port


def resource(server, token=WAREHOUSE_TOKEN) -> DatabricksWarehouse:
    return DatabricksWarehouse(url=warehouse_url(server), token=token)


def test_stream_arrow_yields_bounded_batches(big_warehouse):
    total, biggest = 0, 0
    for batch in resource(big_warehouse).stream_arrow(
            "SELECT * FROM main.blade.blade_maintenance_data WHERE last_modified >= :start",
            {"start": "2024-01-01"}, batch_rows=50_000):
        total += batch.num_rows
        biggest = max(biggest, batch.num_rows)
        assert batch.schema.field("last_modified").type.unit == "us"
    assert total == BIG_ROWS
    assert 0 < biggest <= 50_000


def test_first_batch_can_be_smaller_to_start_a_pipeline_sooner(big_warehouse):
    sizes = [b.num_rows for b in resource(big_warehouse).stream_arrow(
        "SELECT * FROM main.blade.blade_maintenance_data", batch_rows=40_000,
        first_batch_rows=10_000)]
    assert sizes[0] == 10_000 and max(sizes[1:]) == 40_000
    assert sum(sizes) == BIG_ROWS


def test_empty_result_streams_nothing(big_warehouse):
    batches = list(resource(big_warehouse).stream_arrow(
        "SELECT * FROM main.blade.blade_maintenance_data WHERE 1 = 0"))
    assert batches == []


def test_test_connection_reports_catalogs(big_warehouse):
    check = resource(big_warehouse).test_connection()
    assert check.catalogs == ["main"] and check.round_trip_ms > 0


def test_token_from_env_var(big_warehouse, monkeypatch):
    monkeypatch.setenv("DATABRICKS_TOKEN", WAREHOUSE_TOKEN)
    monkeypatch.setenv("BLADE_WAREHOUSE_URL", warehouse_url(big_warehouse))
    configured = DatabricksWarehouse.from_env()
    assert configured.url == "BLADE_WAREHOUSE_URL"  # unresolved EnvVar until Dagster runs it

    @dg.asset
    def probe(warehouse: DatabricksWarehouse) -> int:
        return warehouse.query_arrow("SELECT 41 + 1 AS x").column("x")[0].as_py()

    result = dg.materialize([probe], resources={"warehouse": configured})
    assert result.output_for_node("probe") == 42


def test_wrong_token_fails_fast_without_leaking_it(big_warehouse):
    secret = "s3cr3t-token-value"
    started = time.perf_counter()
    with pytest.raises(SourceAuthError) as err:
        resource(big_warehouse, token=secret).test_connection()
    assert time.perf_counter() - started < 3
    assert secret not in str(err.value)
    assert str(big_warehouse.port) in str(err.value)


@pytest.mark.slow
def test_dead_warehouse_fails_in_seconds_naming_host_and_cause():
    port = free_port()
    dead = DatabricksWarehouse(url=f"http://127.0.0.1:{port}/sql/1.0/warehouses/x", token="t")
    started = time.perf_counter()
    with pytest.raises(SourceUnavailableError) as err:
        dead.test_connection()
    # ~11 s: the connector is the only layer retrying a warehouse call (3 retries); before,
    # a call gave up after ~2.5 s and the step retried it 3 times more (a run failed later)
    assert time.perf_counter() - started < 15
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "refused" in str(err.value).lower()


def test_bad_sql_is_a_query_error(big_warehouse):
    with pytest.raises(SourceQueryError, match="rejected the statement"):
        list(resource(big_warehouse).stream_arrow("SELECT * FROM main.blade.missing"))
