"""In-process variants of the warehouse and the catalog: the same resources' interfaces with
no server, no socket and no subprocess (the fast test tier, ``make test-fast``).

* :class:`InProcessWarehouse` runs the pipeline's Databricks SQL on a DuckDB file in this
  process, translated exactly as the mock warehouse translates it (seeded by the same
  deterministic generator when empty).
* :class:`InProcessCatalog` is the catalog client talking to the catalog service's own app
  (routes, validation, SQLite store) inside this process through an ASGI transport: the same
  requests, answers and errors as over loopback.

Both need the ``devservices`` extra (the mock services' code).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
from pydantic import Field, PrivateAttr

from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import (
    ConnectionCheck,
    SourceQueryError,
    SourceReader,
    check_batch_sizes,
)
from blade_pipeline.storage.catalog import CatalogClient

IN_PROCESS_TOKEN = "in-process-token"  # nothing listens: not a secret
_OPEN: dict[str, duckdb.DuckDBPyConnection] = {}
_OPEN_LOCK = threading.Lock()


def _bind(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Parameter values as the mock warehouse binds what the connector sends: aware
    datetimes become naive UTC (Databricks TIMESTAMP)."""
    if not params:
        return None
    return {name: value.astimezone(dt.UTC).replace(tzinfo=None)
            if isinstance(value, dt.datetime) and value.tzinfo else value
            for name, value in params.items()}


class InProcessWarehouse(SourceReader):
    """A DuckDB file in this process standing in for the Databricks SQL warehouse."""

    db_path: str = Field(description="DuckDB file (created and seeded when empty)")
    rows: int = Field(default=2_000, ge=0, description="rows per table when seeding")
    seed: int = Field(default=42, description="generator seed")
    end_date: str | None = Field(default=None, description="seeded history ends here "
                                                            "(YYYY-MM-DD; default today, UTC)")
    days: int = Field(default=730, ge=1, description="days of seeded history")
    invalid_fraction: float = Field(default=0.01, ge=0, description="invalid rows seeded")

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The process's one DuckDB instance of ``db_path`` (Dagster copies resources; a
        file can be attached once per process)."""
        from blade_pipeline.devservices.warehouse.server import WarehouseConfig, open_database

        key = str(Path(self.db_path).resolve())
        with _OPEN_LOCK:
            if key not in _OPEN:
                _OPEN[key] = open_database(WarehouseConfig(
                    db_path=self.db_path, rows=self.rows, seed=self.seed,
                    end_date=dt.date.fromisoformat(self.end_date) if self.end_date else None,
                    days=self.days, invalid_fraction=self.invalid_fraction))
            return _OPEN[key]

    def close(self) -> None:
        """Close the database (for every copy of this resource in the process)."""
        with _OPEN_LOCK:
            con = _OPEN.pop(str(Path(self.db_path).resolve()), None)
        if con is not None:
            con.close()

    @property
    def endpoint(self) -> str:
        return f"in-process DuckDB warehouse {self.db_path}"

    def _reader(self, sql: str, params: Mapping[str, Any] | None, batch_rows: int
                ) -> pa.RecordBatchReader | None:
        from blade_pipeline.databricks_sql import DatabricksSqlError
        from blade_pipeline.devservices.warehouse.server import MAIN_DATABASE
        from blade_pipeline.devservices.warehouse.sql_dialect import from_duckdb, translate

        try:
            duck_sql = translate(sql, {"main": MAIN_DATABASE})
        except DatabricksSqlError as exc:
            raise SourceQueryError(f"{self.endpoint} rejected the statement: {exc}"
                                      ) from None
        cursor = self._connection().cursor()
        try:
            cursor.execute(f"USE {MAIN_DATABASE}").fetchall()
            relation = cursor.sql(duck_sql, params=_bind(params))
            return None if relation is None else relation.to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            cursor.close()
            raise SourceQueryError(f"{self.endpoint} rejected the statement while running "
                                      f"a query: {from_duckdb(exc, sql)}") from None

    def stream_arrow(self, sql: str, params: Mapping[str, Any] | None = None,
                     batch_rows: int = 250_000,
                     first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        wanted = check_batch_sizes(batch_rows, first_batch_rows)
        reader = self._reader(sql, params, batch_rows)
        if reader is None:
            return
        for batch in reader:
            while batch.num_rows:
                yield batch.slice(0, wanted)
                batch, wanted = batch.slice(wanted), batch_rows

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        reader = self._reader(sql, params, 250_000)
        return reader.read_all() if reader is not None else pa.table({})

    def test_connection(self) -> ConnectionCheck:
        started = time.perf_counter()
        self.query_arrow(source_sql.ping())
        return ConnectionCheck(self.endpoint, ["main"],
                               round((time.perf_counter() - started) * 1000, 1))


class InProcessCatalog(CatalogClient):
    """The catalog service's app (SQLite store at ``db_path``) inside this process, spoken to
    by the regular client through an ASGI transport."""

    db_path: str = Field(description="SQLite file of the catalog store (created if missing)")
    base_url: str = Field(default="http://catalog.in-process")
    token: str = Field(default=IN_PROCESS_TOKEN, repr=False)
    reject_ids: str | None = Field(default=None, description="tests: the service refuses "
                                   "items whose id matches (``blade mock-catalog --reject-ids``)")

    _app_client: Any = PrivateAttr(default=None)

    def _client(self) -> httpx.Client:
        from starlette.testclient import TestClient

        from blade_pipeline.devservices.catalog.faults import FaultSettings
        from blade_pipeline.devservices.catalog.server import create_app

        with self._lock:
            if self._http is None:
                app = create_app(self.db_path, self.token,
                                 faults=FaultSettings(reject_ids=self.reject_ids))
                client = TestClient(app,
                                    base_url=self.base_url, raise_server_exceptions=True,
                                    headers={"Authorization": f"Bearer {self.token}"})
                client.__enter__()  # the app's lifespan: its store opens and, on close, closes
                self._http = client
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.__exit__(None, None, None)
                self._http = None
