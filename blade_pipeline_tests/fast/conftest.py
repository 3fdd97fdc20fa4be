"""The fast tier: every asset, check, job and sensor in this process, on the in-process
warehouse (DuckDB) and catalog (the service's app over an ASGI transport). No subprocess, no
socket, no PostgreSQL: Dagster's ephemeral instance. `make test-fast` runs it with the unit
tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.in_process import InProcessCatalog, InProcessWarehouse

END_DATE = dt.date(2026, 6, 30)
DAYS = 20
ROWS = 3_000  # ~150 rows a day and table
INVALID = 0.03
SEED = 11
DAY = "2026-06-23"  # a Tuesday: busy for every type, with invalid rows to quarantine


def warehouse_at(path: Path) -> InProcessWarehouse:
    return InProcessWarehouse(db_path=str(path), rows=ROWS, seed=SEED,
                              end_date=END_DATE.isoformat(), days=DAYS,
                              invalid_fraction=INVALID)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Iterator[InProcessWarehouse]:
    """One seeded warehouse for the tier (tests that change rows use their own)."""
    resource = warehouse_at(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    yield resource
    resource.close()


@pytest.fixture(scope="session")
def reference() -> duckdb.DuckDBPyConnection:
    """The same rows rebuilt by the generator, for the expectations."""
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, ROWS, SEED, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                   schema="blade")
    return con


@pytest.fixture
def resources(warehouse, tmp_path) -> Iterator[dict]:
    """A fresh catalog and lake per test, the shared warehouse."""
    catalog = InProcessCatalog(db_path=str(tmp_path / "catalog.sqlite3"))
    yield {"warehouse": warehouse, "catalog": catalog,
           "lake": ParquetLake(uri=str(tmp_path / "lake"))}
    catalog.close()
