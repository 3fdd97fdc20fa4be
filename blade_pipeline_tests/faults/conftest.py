"""Fixtures and helpers of the fault suite.

Every case runs the real stack on loopback (mock warehouse, catalog service, Dagster on the
PostgreSQL-backed instance), injects one fault and asserts the defined end state with
:func:`assert_exact`: every valid row of the day in the catalog with its current hash, no
duplicate ids, no version above 1, every invalid row quarantined with a reason.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from blade_pipeline.config.sources import BladeSource, source_for
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.devservices.processes import ServerProcess
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
from blade_pipeline_tests.expectations import (  # noqa: F401 (re-exported to the cases)
    NON_KEY_INVALID,
    catalog_items,
    expected_ids,
    materialization,
)
from blade_pipeline_tests.faults.secrets_scan import secrets_found

#: Small tables over a short history: ~1 000 rows a day, so a case takes seconds.
ROWS = 30_000
DAYS = 30
INVALID = 0.03
DAY = (END_DATE - dt.timedelta(days=1)).isoformat()
#: The last three days: what the range-run variants of the cases run in one run.
RANGE = [(END_DATE - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1)]
#: Invalid kinds whose row is quarantined and whose key does not reach the catalog
#: (a ``duplicate_key`` row repeats a valid key: that key is still uploaded once).
#: CLI flags of every warehouse of this suite (same rows as :func:`reference_db`).
WAREHOUSE_ARGS = ("--days", str(DAYS), "--invalid-fraction", str(INVALID))


@dataclass
class Recorded:
    """What fault cases produced (runs, failure texts, lakes), for the secrets search."""

    run_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    lakes: dict[str, ParquetLake] = field(default_factory=dict)  # by URI: local or s3://
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)


@pytest.fixture(scope="session")
def recorded(dagster_instance, s3_server) -> Iterator[Recorded]:
    """The runs of every fault case of the session; when the session ends, none of them may
    hold a secret (case 11's search over all of them, whatever order the cases ran in: a leak
    is reported as an error of the last case's teardown)."""
    recorded = Recorded()
    yield recorded
    found, _ = secrets_found(recorded, dagster_instance, s3_server.base_url)
    assert not found, f"secrets in what the fault cases produced: {found}"


@pytest.fixture(scope="session")
def reference_db() -> duckdb.DuckDBPyConnection:
    """The warehouse's rows rebuilt in-process (same generator, seed and flags)."""
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, ROWS, 7, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                   schema="blade")
    return con


@pytest.fixture(scope="session")
def fault_warehouse(start_warehouse) -> ServerProcess:
    """A healthy warehouse shared by the cases that only fault the catalog or the lake."""
    return start_warehouse(ROWS, *WAREHOUSE_ARGS, session=True)


def make_resources(warehouse_server: ServerProcess, catalog_server: ServerProcess,
                   lake_dir: Path | str, *, warehouse_token: str = WAREHOUSE_TOKEN,
                   catalog_token: str = CATALOG_TOKEN, **catalog_config: Any) -> dict[str, Any]:
    catalog_config = {"backoff_base_s": 0.05, "backoff_max_s": 0.5, **catalog_config}
    return {
        "warehouse": DatabricksWarehouse(url=warehouse_url(warehouse_server),
                                         token=warehouse_token),
        "catalog": CatalogClient(base_url=catalog_server.base_url, token=catalog_token,
                                 **catalog_config),
        "lake": ParquetLake(uri=str(lake_dir)),
    }


def slow_extract(start_warehouse, catalog: ServerProcess, lake_dir: Path
                 ) -> tuple[ServerProcess, dict[str, Any]]:
    """A warehouse of its own answering inline (no cloud fetch), 300 ms per Thrift call, and
    resources on it: read in pages of 100 rows (``batch_rows=100``), ~900 rows take ~3 s, so
    the staged file is being written when the warehouse is killed. Each call to the killed
    warehouse is retried once by the connector (default 3 times: ~11 s a call, waited out by
    every step attempt; integration's dead-warehouse test holds the default's timing)."""
    server = start_warehouse(ROWS, *WAREHOUSE_ARGS, "--latency-ms", "300")
    res = make_resources(server, catalog, lake_dir)
    res["warehouse"] = DatabricksWarehouse(url=warehouse_url(server), token=WAREHOUSE_TOKEN,
                                           use_cloud_fetch=False, max_retries=1)
    return server, res


def range_tags(days: list[str]) -> dict[str, str]:
    """The tags of one run over ``days`` (what a single-run backfill launches)."""
    return {ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]}


def run(source: BladeSource, res: dict[str, Any], instance: dg.DagsterInstance,
        recorded: Recorded | None = None, day: str = DAY,
        selection: list[dg.AssetKey] | None = None, days: list[str] | None = None,
        **build: Any) -> dg.ExecuteInProcessResult:
    """Materialize the source's assets (or ``selection``) for ``day`` (or the range
    ``days`` in one run) on ``instance``."""
    partition: dict[str, Any] = ({"partition_key": day} if days is None
                                 else {"tags": range_tags(days)})
    result = dg.materialize(build_blade_assets(source, **build), resources=res,
                            instance=instance, raise_on_error=False, selection=selection,
                            **partition)
    if recorded is not None:
        recorded.run_ids.append(result.run_id)
        recorded.results.append(result)
        recorded.texts += failure_messages(result)
        lake = res["lake"]
        recorded.lakes.setdefault(lake.uri, lake)
    return result


def retried_because(result: dg.ExecuteInProcessResult) -> str:
    """The error chain of the run's first step retry (the Failure the RetryPolicy retried sits
    under Dagster's wrapper); AssertionError when no step was retried."""
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried, "the step was not retried by its RetryPolicy"
    chain, error = [], retried[0].event_specific_data.error
    while error is not None:
        chain.append(error.message)
        error = error.cause or error.context
    return " ".join(chain)


def assert_remarks_column_evolved(result: dg.ExecuteInProcessResult) -> None:
    """The run met a text column ``remarks`` added at the source: carried (the default
    ``on_new_column: evolve``), ``schema_changed`` WARN naming it."""
    assert result.success, failure_messages(result)
    check = checks(result)["schema_changed"]
    assert check.severity.value == "WARN"
    assert "ADD_COLUMN remarks string: evolved (on_new_column: evolve)" in check.description


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """Text of every step failure of the run (message, cause chain, stack)."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error is not None:
                out.append(error.to_string())
                error = error.cause
    return out


def materialized(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> bool:
    return any(e.event_type_value == "ASSET_MATERIALIZATION"
               and e.event_specific_data.materialization.asset_key == key
               for e in result.all_events)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def invalid_of_day(reference: duckdb.DuckDBPyConnection, data_type: str,
                   day: str = DAY) -> list[dict[str, Any]]:
    """The day's deliberately invalid rows: row_index, key, kind, field."""
    cur = reference.cursor()
    cur.register("invalid", generator.invalid_rows(reference, data_type))
    return [dict(zip(("row_index", "key", "kind", "field"), row, strict=True))
            for row in cur.execute(
                f"SELECT i.row_index, i.key, i.kind, i.field FROM invalid i JOIN "
                f"(SELECT row_number() OVER () - 1 AS row_index, last_modified "
                f"FROM blade.{generator.TABLES[data_type]}) t USING (row_index) "
                "WHERE CAST(t.last_modified AS DATE) = $day ORDER BY i.row_index",
                {"day": day}).fetchall()]


def staged_hashes(lake: ParquetLake, data_type: str, day: str = DAY) -> dict[str, str]:
    table = pq.read_table(lake.partition_dir(data_type, day) + "/part-0.parquet",
                          columns=["item_id", "content_hash"], filesystem=lake.filesystem)
    return dict(zip(table.column("item_id").to_pylist(),
                    table.column("content_hash").to_pylist(), strict=True))


def quarantine(lake: ParquetLake, data_type: str, day: str = DAY):
    return pq.read_table(lake.partition_dir(data_type, day, "quarantine") + "/part-0.parquet",
                         filesystem=lake.filesystem)


def assert_exact(res: dict[str, Any], reference: duckdb.DuckDBPyConnection, data_type: str,
                 day: str = DAY, changed: frozenset[str] = frozenset(),
                 days: list[str] | None = None) -> list[dict]:
    """The catalog holds exactly the valid rows of the day (or of ``days``): current hashes
    (a key on two days: the later day's row), no duplicate ids, version 1 unless in
    ``changed``; every invalid row of each day is quarantined with a reason. Returns the
    catalog's items."""
    source = source_for(data_type)
    lake: ParquetLake = res["lake"]
    days = days or [day]
    items = catalog_items(res["catalog"], source.catalog_data_source)
    ids = [item["item_id"] for item in items]
    assert len(ids) == len(set(ids)), "duplicate item ids in the catalog"
    expected = set().union(*(expected_ids(reference, data_type, d) for d in days))
    assert expected and set(ids) == expected, (
        f"missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}")
    staged = {k: v for d in days for k, v in staged_hashes(lake, data_type, d).items()}
    assert set(staged) == expected
    wrong = [i["item_id"] for i in items if i["content_hash"] != staged[i["item_id"]]]
    assert not wrong, f"stale content hash in the catalog: {wrong[:5]}"
    bumped = [(i["item_id"], i["version"]) for i in items
              if i["version"] != 1 and i["item_id"] not in changed]
    assert not bumped, f"version bumped without a data change: {bumped[:5]}"
    for one_day in days:
        table = quarantine(lake, data_type, one_day)
        reasons = table.column("_reason").to_pylist()
        assert table.num_rows == expected_quarantined(reference, data_type, one_day)
        assert all(reasons)
    return items


def expected_quarantined(reference: duckdb.DuckDBPyConnection, data_type: str,
                         day: str = DAY) -> int:
    """Rows of the day the validation must quarantine: every row of a non-key invalid kind,
    plus all but one row of each key repeated within the day (a ``duplicate_key`` row whose
    neighbour lies on another day is the only row of its key in this partition: valid here)."""
    pk = source_for(data_type).primary_key
    non_key = sum(1 for row in invalid_of_day(reference, data_type, day)
                  if row["kind"] in NON_KEY_INVALID)
    [(repeats,)] = reference.execute(
        f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n "
        f"FROM blade.{generator.TABLES[data_type]} "
        f"WHERE CAST(last_modified AS DATE) = $day AND {pk} IS NOT NULL "
        f"GROUP BY {pk} HAVING count(*) > 1)", {"day": day}).fetchall()
    return non_key + repeats


@pytest.fixture
def lake_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lake"
    path.mkdir()
    yield path


def stored_items(catalog: ServerProcess) -> int:
    """Items the catalog has committed (/stats is not slowed by --latency-ms); 0 if down."""
    try:
        answer = httpx.get(catalog.base_url + "/api/v1/stats",
                           headers={"Authorization": f"Bearer {CATALOG_TOKEN}"}, timeout=5)
    except httpx.HTTPError:
        return 0
    return answer.json()["total"]


@dataclass
class Killer:
    """A thread that ``kill -9``s ``server`` once ``seen()`` returns something truthy (within
    60 s); what it returned is kept in ``at``."""

    server: ServerProcess
    seen: Callable[[], Any]
    at: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            value = self.seen()
            if value:
                self.server.kill()
                self.at.append(value)
                return
            time.sleep(0.02)

    def join(self) -> None:
        self.thread.join(5)


def rerun_exact_after_restart(server: ServerProcess, source: BladeSource, res: dict[str, Any],
                              instance: dg.DagsterInstance, recorded: Recorded,
                              reference: duckdb.DuckDBPyConnection, **build: Any) -> None:
    """Restart the killed warehouse, re-run the source's day and find the catalog exact."""
    restarted = ServerProcess(server.args, server.port, server.log_path)
    restarted.start("/healthz", timeout=120)
    try:
        again = run(source, res, instance, recorded, **build)
        assert again.success, failure_messages(again)
        assert_exact(res, reference, source.data_type)
    finally:
        restarted.stop()


def kill_mid_extract(server: ServerProcess, lake_dir: Path) -> Killer:
    """Kill the warehouse as soon as a partition's temp file shows up in the lake."""
    return Killer(server, lambda: [p.name for p in lake_dir.rglob(".tmp-*")])


def kill_mid_upload(catalog: ServerProcess, items: int) -> Killer:
    """Kill the catalog once it has committed ``items`` items."""
    return Killer(catalog, lambda: (stored := stored_items(catalog)) >= items and stored)
