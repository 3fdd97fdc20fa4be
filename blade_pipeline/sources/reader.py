"""What the pipeline asks of a source, whatever its kind: SQL in, Arrow record batches out.

:class:`SourceReader` is the interface every reader implements (Databricks, PostgreSQL, MySQL,
CSV drops); the errors say what went wrong in terms the steps act on (fatal or retryable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa

if TYPE_CHECKING:
    from blade_pipeline.config.sources import BladeSource


class SourceError(Exception):
    """A call to a source failed; the message names the source and the cause."""


class SourceAuthError(SourceError):
    """The source refused the credentials (fatal, not retried)."""


class SourceQueryError(SourceError):
    """The source rejected the statement (bad SQL, unknown table; fatal)."""


class SourceUnavailableError(SourceError):
    """The source could not be reached or kept failing through its driver's retries."""


class SourceResultLostError(SourceUnavailableError):
    """A result stream broke mid-fetch: no request-level retry recovers it, running the query
    again (the step's RetryPolicy) may."""


@dataclass(frozen=True)
class ConnectionCheck:
    """What ``test_connection`` found."""

    endpoint: str
    catalogs: list[str]
    round_trip_ms: float


class SourceReader(dg.ConfigurableResource, ABC):
    """What the pipeline asks of a source: Databricks SQL (named ``:markers``) in, Arrow
    record batches out. Implemented by ``DatabricksWarehouse``, ``PostgresDatabase``,
    ``MySQLDatabase`` (each translating to its dialect) and ``CsvDrops`` (the landed rows);
    ``blade_pipeline_tests.in_process.InProcessWarehouse`` runs the SQL on DuckDB in this
    process (fast tests)."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Human-readable address (no credentials)."""

    @abstractmethod
    def stream_arrow(self, sql: str, params: Mapping[str, Any] | None = None,
                     batch_rows: int = 250_000,
                     first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """The rows of ``sql`` as record batches of at most ``batch_rows`` (the first one at
        most ``first_batch_rows``), fetched as the caller consumes them."""

    @abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """A small result as one table (CLI, sensors, checks)."""

    @abstractmethod
    def test_connection(self) -> ConnectionCheck:
        """Reach the source and list its catalogs (schemas), or raise :class:`SourceError`."""

    def key_is_unique(self, source: BladeSource) -> bool:
        """Whether the source itself forbids two rows with one primary key (then staging
        does not look for duplicates). Default: it does not say."""
        return False


def check_batch_sizes(batch_rows: int, first_batch_rows: int | None) -> int:
    """The first batch's size; ValueError for sizes below one row."""
    if batch_rows < 1 or (first_batch_rows is not None and first_batch_rows < 1):
        raise ValueError(f"batch sizes must be at least 1 row (batch_rows={batch_rows}, "
                         f"first_batch_rows={first_batch_rows})")
    return min(first_batch_rows or batch_rows, batch_rows)


def sized_batches(batches: Iterable[pa.RecordBatch], batch_rows: int,
                  first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """A driver's batches cut to at most ``batch_rows`` rows (the first at most
    ``first_batch_rows``); empty ones are left out."""
    limit = check_batch_sizes(batch_rows, first_batch_rows)
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            yield batch.slice(start, limit)
            start, limit = start + limit, batch_rows


def utc_naive(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Databricks ``TIMESTAMP`` columns (Arrow ``timestamp[tz=Etc/UTC]``) as naive UTC, as
    ``TIMESTAMP_NTZ`` columns arrive: one form for validation, items and content hashes, so
    a source's items are the same whichever of the two types its table uses."""
    aware = [i for i, f in enumerate(batch.schema)
             if pa.types.is_timestamp(f.type) and f.type.tz is not None]
    for i in aware:  # a cast that drops the zone keeps the UTC instant: no data is rewritten
        field = batch.schema.field(i)
        batch = batch.set_column(i, field.with_type(pa.timestamp(field.type.unit)),
                                 batch.column(i).cast(pa.timestamp(field.type.unit)))
    return batch
