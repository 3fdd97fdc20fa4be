"""A MySQL or MariaDB source database (``kind: mysql`` in sources.yaml), read as Arrow.

connectorx reads the result straight into Arrow record batches (Rust, no Python row tuples):
neither ADBC (no MySQL driver on PyPI) nor DuckDB's mysql extension (downloaded at run time)
is available to a plain ``pip install``. connectorx binds no parameters, so each value of
the pipeline's Databricks SQL (``:start``, ``:cursor``, …) is written into the statement as a
typed literal made from a date, time or number the pipeline computed — never from text: a
string or list parameter is refused. The text is translated once to MySQL by sqlglot.

Types: connectorx hands ``DECIMAL`` over as ``decimal(38,10)``: the schema plan casts a model's
decimal column back to its own type (a value that does not fit is rescued), so the items are
the Databricks kind's items. The URL is a secret when it carries a password
(``dg.EnvVar("BLADE_MYSQL_URL")``); errors name host, port and database only.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import sqlglot
from pydantic import PrivateAttr
from sqlglot import exp

from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.database import SourceDatabase
from blade_pipeline.sources.reader import (
    ConnectionCheck,
    SourceError,
    SourceResultLostError,
    check_batch_sizes,
    sized_batches,
)

DEMO_MYSQL_URL = "mysql://root:@127.0.0.1:3306/blade_sources"


def _is_driver_error(exc: BaseException) -> bool:
    """connectorx's errors: RuntimeError, OSError, and pyo3's PanicException (a connection
    dropped mid-read: "cx writer failed: ... server disconnected"), which derives from
    BaseException, so ``except Exception`` misses it; pyo3 creates its type lazily, so it is
    known by name."""
    return isinstance(exc, RuntimeError | OSError) or type(exc).__name__ == "PanicException"


@functools.lru_cache(maxsize=512)
def _parsed(databricks_sql: str) -> exp.Expression:
    return sqlglot.parse_one(databricks_sql, read="databricks")


def _literal(name: str, value: Any) -> exp.Expression:
    """A typed SQL literal of a value the pipeline computed (never of text)."""
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ", timespec="microseconds")),
                        "DATETIME(6)", dialect="mysql")
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE", dialect="mysql")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"parameter {name}: a {type(value).__name__} is not written into "
                         "SQL (connectorx binds no parameters; dates, times and numbers only)")
    return exp.Literal.number(value)


def mysql_sql(databricks_sql: str, params: Mapping[str, Any] | None = None) -> str:
    """``databricks_sql`` as MySQL with each named marker replaced by its value's literal."""
    tree = _parsed(databricks_sql).copy()
    params = params or {}
    for marker in list(tree.find_all(exp.Placeholder)):
        if marker.name not in params:
            raise ValueError(f"no value for parameter {marker.name}")
        marker.replace(_literal(marker.name, params[marker.name]))
    return tree.sql(dialect="mysql")


class MySQLDatabase(SourceDatabase):
    """A MySQL/MariaDB database holding source tables (``schema`` = the MySQL database)."""

    product: ClassVar[str] = "MySQL"
    scheme: ClassVar[str] = "mysql"
    default_port: ClassVar[int] = 3306
    url_variable: ClassVar[str] = "BLADE_MYSQL_URL"
    auth_markers: ClassVar[tuple[str, ...]] = ("access denied", "unknown database")
    down_markers: ClassVar[tuple[str, ...]] = (
        "connection refused", "can't connect", "timed out", "lost connection", "gone away",
        "broken pipe", "connection reset", "server disconnected", "connection was killed")

    _probed: bool = PrivateAttr(default=False)

    def _failed(self, exc: BaseException, doing: str) -> SourceError:
        """The driver's error as ours; after a lost server the next read probes again."""
        error = self._wrap(exc, doing)
        if isinstance(error, SourceResultLostError):
            self._probed = False
        return error

    def _probe(self, doing: str) -> None:
        """One login through PyMySQL before the first read, and again after the server was
        lost: connectorx's connection pool keeps retrying a refused login or an unreachable
        server for ~30 s before it fails (so each retry of a step would wait that long);
        this answers in one round trip."""
        import pymysql

        parts = urlsplit(self.url)
        try:
            pymysql.connect(host=parts.hostname or "localhost", port=parts.port or 3306,
                            user=unquote(parts.username or ""),
                            password=unquote(parts.password or ""),
                            database=parts.path.lstrip("/") or None,
                            connect_timeout=self.connect_timeout_s).close()
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, doing) from None
        self._probed = True

    def _read(self, sql: str, doing: str, **options: Any) -> Any:
        import connectorx

        if not self._probed:
            self._probe(doing)
        try:
            return connectorx.read_sql(self.url, sql, **options)
        except BaseException as exc:
            if not _is_driver_error(exc):
                raise
            raise self._failed(exc, doing) from None

    def stream_arrow(self, sql: str, params: Mapping[str, Any] | None = None,
                     batch_rows: int = 250_000,
                     first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        check_batch_sizes(batch_rows, first_batch_rows)
        reader = self._read(mysql_sql(sql, params), "streaming rows",
                            return_type="arrow_stream", batch_size=batch_rows)
        try:
            yield from sized_batches(reader, batch_rows, first_batch_rows)
        except BaseException as exc:
            if not _is_driver_error(exc):
                raise
            raise self._failed(exc, "streaming rows") from None

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self._read(mysql_sql(sql, params), "running a query", return_type="arrow")

    def test_connection(self) -> ConnectionCheck:
        started = time.perf_counter()
        table = self._read(source_sql.schema_names(), "checking the connection",
                           return_type="arrow")
        return ConnectionCheck(self.endpoint, table.column(0).to_pylist(),
                               round(1000 * (time.perf_counter() - started), 1))
