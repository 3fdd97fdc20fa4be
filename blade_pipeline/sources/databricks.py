"""DatabricksWarehouse: a Dagster resource over databricks-sql-connector, streaming Arrow.

Works against a real workspace (``DATABRICKS_SERVER_HOSTNAME`` + ``DATABRICKS_HTTP_PATH``,
https) and against the mock warehouse (``BLADE_WAREHOUSE_URL``, plain http on loopback).
The token comes from ``DATABRICKS_TOKEN`` through ``dg.EnvVar`` and never appears in errors.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pyarrow as pa
from databricks import sql as dbsql
from databricks.sql import exc as dbexc
from pydantic import Field

from blade_pipeline.config.settings import DEMO_WAREHOUSE_TOKEN, DEMO_WAREHOUSE_URL, BladeSettings
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import (
    ConnectionCheck,
    SourceAuthError,
    SourceError,
    SourceQueryError,
    SourceReader,
    SourceResultLostError,
    SourceUnavailableError,
    check_batch_sizes,
)


def preload_connector() -> None:
    """Import the connector's client module (pandas with it, ~0.6 s) now: ``dbsql.connect``
    imports it on first use, inside a run's first query. Dagster calls this when it sets the
    resource up for a step; processes that never query (code servers, the UI) skip it."""
    importlib.import_module("databricks.sql.client")



class DatabricksWarehouse(SourceReader):
    """A Databricks SQL warehouse reached with the official connector (Thrift, Arrow results).

    Set either ``url`` (``http(s)://host[:port]/sql/1.0/warehouses/<id>``) or
    ``server_hostname`` + ``http_path``. The connector's retries are the only ones a warehouse
    call gets (see :mod:`blade_pipeline.defs.failures`), bounded so that a dead warehouse fails in
    seconds, not in the connector's default 15 minutes.
    """

    url: str | None = Field(default=None, description="Full endpoint URL (mock or workspace).")
    server_hostname: str | None = Field(default=None, description="Workspace host (https).")
    http_path: str | None = Field(default=None, description="Warehouse HTTP path.")
    token: str = Field(description="Personal access token; pass dg.EnvVar('DATABRICKS_TOKEN').")
    catalog: str | None = Field(default=None, description="Initial catalog of each session.")
    default_schema: str | None = Field(default=None, description="Initial schema.")
    # The connector is the one layer that retries warehouse calls (see defs.failures), so its
    # budget alone must ride out a flaky warehouse: 30 % 503s at 2 s a call (fault case 1) can
    # give one of two concurrent statements three 503s in a row, and the connector waits at
    # least retry_delay_max_s after each 503 (~23 s). A dead warehouse fails a call in ~11 s.
    max_retries: int = Field(default=3, ge=0, description="Retries per call (4 attempts) on "
                                                          "429/503 and connection errors.")
    retry_delay_min_s: float = Field(default=1.0, ge=1.0, description="First retry delay.")
    retry_delay_max_s: float = Field(default=5.0, ge=5.0, description="Largest retry delay.")
    retry_max_duration_s: float = Field(
        default=30.0, ge=1.0, description="Give up retrying a call after this long (seconds).")
    socket_timeout_s: float = Field(default=120.0, gt=0)
    use_cloud_fetch: bool = Field(default=True, description="Large results as Arrow files.")
    result_buffer_mb: int = Field(default=64, ge=1, description="Bytes asked per fetch page.")

    @classmethod
    def from_env(cls, settings: BladeSettings | None = None, **overrides: Any
                 ) -> DatabricksWarehouse:
        """Configured from env vars (DESIGN §8, :mod:`blade_pipeline.config.settings`) through
        ``dg.EnvVar``.

        In the demo deployment, with no warehouse configured at all, points at the local mock
        with its demo token. Outside Dagster, call ``.process_config_and_initialize()`` to
        resolve the EnvVars.
        """
        settings = settings or BladeSettings.load()
        token: Any = dg.EnvVar("DATABRICKS_TOKEN")
        if settings.server_hostname:
            where: dict[str, Any] = {"server_hostname": dg.EnvVar("DATABRICKS_SERVER_HOSTNAME"),
                                     "http_path": dg.EnvVar("DATABRICKS_HTTP_PATH")}
        elif settings.warehouse_url:
            where = {"url": dg.EnvVar("BLADE_WAREHOUSE_URL")}
        else:
            where = {"url": DEMO_WAREHOUSE_URL}
            if settings.databricks_token is None:
                token = DEMO_WAREHOUSE_TOKEN
        return cls(**where, token=token, max_retries=settings.warehouse_max_retries,
                   **overrides)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        preload_connector()

    # ---- connection -------------------------------------------------------------------------
    def _endpoint(self) -> tuple[str, str, str | None]:
        """(host, http_path, connection_uri or None)."""
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SourceError(f"warehouse url {self.url!r} is not http(s)://host/path")
            return parts.netloc, parts.path, self.url
        if not (self.server_hostname and self.http_path):
            raise SourceError("no warehouse configured: set BLADE_WAREHOUSE_URL, or "
                                 "DATABRICKS_SERVER_HOSTNAME and DATABRICKS_HTTP_PATH")
        return self.server_hostname, self.http_path, None

    @property
    def endpoint(self) -> str:
        """Human-readable warehouse address (no credentials)."""
        host, path, uri = self._endpoint()
        return uri or f"https://{host}{path}"

    def _scrub(self, text: str) -> str:
        """Hide the token should any library echo it (tokens shorter than 4 are not real)."""
        return text.replace(self.token, "***") if len(self.token or "") >= 4 else text

    def _probe(self) -> str:
        """Why a TCP connection to the warehouse fails, or '' if it opens."""
        parts = urlsplit(self.endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=3):
                return ""
        except OSError as exc:
            return f"TCP connect to {parts.hostname}:{port} failed: {exc.strerror or exc}"

    def _wrap(self, exc: Exception, doing: str, mid_stream: bool = False) -> SourceError:
        """Map connector exceptions to ours, naming the warehouse and the cause."""
        cause = str(exc).strip() or type(exc).__name__
        original = str((getattr(exc, "context", None) or {}).get("original-exception") or "")
        if original and original not in cause:
            cause += f" (cause: {original[-300:]})"
        cause = self._scrub(cause)
        where = f"Databricks SQL warehouse {self.endpoint}"
        http_code = (getattr(exc, "context", None) or {}).get("http-code")
        if isinstance(exc, dbexc.RequestError) and http_code in (401, 403):
            return SourceAuthError(f"{where} refused the access token while {doing}: {cause}")
        if isinstance(exc, dbexc.ServerOperationError | dbexc.ProgrammingError):
            return SourceQueryError(f"{where} rejected the statement while {doing}: {cause}")
        probe = self._probe()
        if probe:
            cause = f"{probe} ({cause})"
        lost = SourceResultLostError if mid_stream else SourceUnavailableError
        return lost(f"{where} failed while {doing}: {cause}")

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connector Connection (one warehouse session), closed on exit."""
        host, path, uri = self._endpoint()
        kwargs: dict[str, Any] = {
            "server_hostname": host, "http_path": path, "access_token": self.token,
            "enable_telemetry": False, "use_cloud_fetch": self.use_cloud_fetch,
            "_retry_stop_after_attempts_count": self.max_retries,
            "_retry_stop_after_attempts_duration": self.retry_max_duration_s,
            "_retry_delay_min": self.retry_delay_min_s,
            "_retry_delay_max": max(self.retry_delay_max_s, self.retry_delay_min_s),
            "_socket_timeout": self.socket_timeout_s,
        }
        if uri:
            kwargs["_connection_uri"] = uri
        if self.catalog:
            kwargs["catalog"] = self.catalog
        if self.default_schema:
            kwargs["schema"] = self.default_schema
        try:
            conn = dbsql.connect(**kwargs)
        except Exception as exc:
            raise self._wrap(exc, "opening a session") from None
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # ---- queries ----------------------------------------------------------------------------
    def stream_arrow(self, sql: str, params: Mapping[str, Any] | None = None,
                     batch_rows: int = 250_000,
                     first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """Run ``sql`` and yield its rows as Arrow record batches of at most ``batch_rows``.

        Never holds the whole result: pages are fetched as the caller consumes batches.
        ``first_batch_rows`` (smaller) makes the first batch arrive sooner, so that a
        pipeline behind it starts working while the rest is still being fetched.
        """
        wanted = check_batch_sizes(batch_rows, first_batch_rows)
        with self.connect() as conn:
            cursor = conn.cursor(arraysize=batch_rows,
                                 buffer_size_bytes=self.result_buffer_mb * 1024 * 1024)
            try:
                try:
                    cursor.execute(sql, dict(params) if params else None)
                except Exception as exc:
                    raise self._wrap(exc, "running a query") from None
                while True:
                    try:
                        table = cursor.fetchmany_arrow(wanted)
                    except Exception as exc:
                        raise self._wrap(exc, "fetching results", mid_stream=True) from None
                    if table.num_rows == 0:
                        return
                    yield from table.combine_chunks().to_batches(max_chunksize=wanted)
                    wanted = batch_rows
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Small results as one Arrow table (for the CLI and checks, not the hot path)."""
        with self.connect() as conn, conn.cursor() as cursor:
            try:
                cursor.execute(sql, dict(params) if params else None)
                return cursor.fetchall_arrow()
            except Exception as exc:
                raise self._wrap(exc, "running a query") from None

    def test_connection(self) -> ConnectionCheck:
        """Open a session, run ``SELECT 1`` and list catalogs; raise SourceError if not."""
        started = time.perf_counter()
        with self.connect() as conn, conn.cursor() as cursor:
            try:
                cursor.execute(source_sql.ping())
                cursor.fetchall()
                elapsed = (time.perf_counter() - started) * 1000
                cursor.catalogs()
                catalogs = [row[0] for row in cursor.fetchall()]
            except Exception as exc:
                raise self._wrap(exc, "testing the connection") from None
        return ConnectionCheck(self.endpoint, catalogs, round(elapsed, 1))
