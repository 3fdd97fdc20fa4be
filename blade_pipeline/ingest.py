"""The pipeline's steps as plain functions over Arrow batches (no Dagster in here).

extract -> validate/quarantine -> transform to items -> stage (Parquet) -> diff + upload.
The assets, the query job, the item job and `blade bench` all call these, so there is one code
path; Dagster only wraps them (partitions, checks, retries, metadata, progress events).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.items import ITEM_SCHEMA, IngestRun, ItemBuilder
from blade_pipeline.pipelining import WriteBehind, prefetch
from blade_pipeline.resources.catalog import BatchResult, CatalogClient, KnownItems
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.resources.warehouse import DatabricksWarehouse
from blade_pipeline.schemas import required_columns
from blade_pipeline.sources import BladeSource
from blade_pipeline.validation import (
    REASON_COLUMN,
    ROW_COLUMN,
    BatchOutcome,
    PartitionValidator,
    duplicate_keys_sql,
)

DEFAULT_BATCH_ROWS = 250_000
FIRST_BATCH_DIVISOR = 4
PREVIEW_ROWS = 5
KEPT_NEWER = "kept newer in catalog"  # how reports name items whose catalog row is newer


# ---- extract ---------------------------------------------------------------------------------
def partition_sql(source: BladeSource) -> str:
    """One day of a source: rows whose watermark falls in [:start, :end), in the warehouse's
    own order (no sort: the warehouse streams as it scans; duplicates are found apart)."""
    wm = source.watermark_column
    return (f"SELECT * FROM {source.warehouse.qualified_name} "
            f"WHERE `{wm}` >= :start AND `{wm}` < :end")


def duplicate_keys(warehouse: DatabricksWarehouse, source: BladeSource, sql: str,
                   params: dict[str, Any] | None) -> Future[pa.Table]:
    """Keys held by more than one row of ``sql`` and the newest watermark of each, asked for
    in a background thread: the answer is needed only by the first batch's validation, so
    the query overlaps the extract's start instead of delaying it."""
    future: Future[pa.Table] = Future()

    def ask() -> None:
        try:
            future.set_result(warehouse.query_arrow(duplicate_keys_sql(source, sql), params))
        except BaseException as exc:  # re-raised where the answer is used
            future.set_exception(exc)

    threading.Thread(target=ask, name="duplicate-keys", daemon=True).start()
    return future


def day_bounds(day: str) -> dict[str, dt.datetime]:
    """Query parameters for a daily partition key ``YYYY-MM-DD``."""
    start = dt.datetime.fromisoformat(day)
    return {"start": start, "end": start + dt.timedelta(days=1)}


def extract(warehouse: DatabricksWarehouse, sql: str, params: dict[str, Any] | None,
            batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Rows of ``sql`` as Arrow batches, streamed (never the whole result in memory).

    The first batch is a quarter of the others: validation, transform and writing start
    on it while the warehouse is still sending the rest (the stage ends ~0.3 s sooner)."""
    yield from warehouse.stream_arrow(sql, params, batch_rows=batch_rows,
                                      first_batch_rows=max(batch_rows // FIRST_BATCH_DIVISOR, 1))


# ---- stage -----------------------------------------------------------------------------------
@dataclass
class StageResult:
    """What staging one partition (or one query result) produced."""

    staged_id: str
    extracted: int = 0
    valid: int = 0
    quarantined: int = 0
    bytes: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    schema_errors: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""
    quarantine_path: str = ""

    @property
    def invalid_fraction(self) -> float:
        return self.quarantined / self.extracted if self.extracted else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds else 0.0

    def footer(self) -> dict[str, Any]:
        """What the staged file's footer records (read back by the asset checks)."""
        data = asdict(self)
        data.pop("preview")
        return data


def _quarantine_schema(raw: pa.Schema) -> pa.Schema:
    return raw.append(pa.field(ROW_COLUMN, pa.int64())).append(pa.field(REASON_COLUMN, pa.string()))


def _validated(validator: PartitionValidator, batches: Iterator[pa.RecordBatch]
               ) -> Iterator[BatchOutcome]:
    """Each batch validated; closing this closes ``batches`` (the warehouse cursor) at once."""
    try:
        yield from map(validator.validate, batches)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def stage(source: BladeSource, batches: Iterator[pa.RecordBatch], lake: ParquetLake,
          items_dir: str, quarantine_dir: str, run: IngestRun,
          on_batch: Callable[[StageResult], None] | None = None,
          duplicates: pa.Table | Future[pa.Table] | None = None) -> StageResult:
    """Validate, transform and write batches: items to ``items_dir``, invalid rows (with a
    reason each) to ``quarantine_dir``. Both files stream (memory bounded by the batch) and
    are replaced atomically at the end, even when empty; on error neither changes.
    ``duplicates``: :func:`duplicate_keys` of the same rows."""
    started = time.perf_counter()
    result = StageResult(staged_id=uuid.uuid4().hex)
    validator = PartitionValidator(source, duplicates)
    builder = ItemBuilder(source, run)
    items_out = lake.open_writer(items_dir, ITEM_SCHEMA)
    quarantine_out = None
    writer = WriteBehind(lambda pair: (items_out.write(pair[0]), quarantine_out.write(pair[1])),
                         name="stage-writer")
    step = lake.row_group_rows
    # three threads: extract + validate | build items (here) | write
    validated = prefetch(_validated(validator, batches), name="extract-validate")
    try:
        for outcome in validated:
            batch = outcome.rows
            if quarantine_out is None:
                quarantine_out = lake.open_writer(quarantine_dir, _quarantine_schema(batch.schema))
                expected = set(required_columns(source.data_type))
                result.extra_columns = [c for c in batch.schema.names if c not in expected]
            # one row group at a time: the writer starts on a batch's first row group while
            # the next one is built, and the last batch leaves less to write at the end
            quarantined = outcome.quarantined  # written with the batch's first row group
            for start in range(0, batch.num_rows, step):
                keep = outcome.keep.slice(start, step) if outcome.keep is not None else None
                items = builder.build(batch.slice(start, step), keep)
                writer.put((items, quarantined))
                quarantined = quarantined.slice(0, 0)
                result.valid += items.num_rows
            result.extracted += batch.num_rows
            result.quarantined += outcome.quarantined.num_rows
            if len(result.preview) < PREVIEW_ROWS and outcome.valid_rows:
                result.preview.extend(outcome.head(PREVIEW_ROWS - len(result.preview)))
            if on_batch:
                on_batch(result)
        writer.close()
        if quarantine_out is None:
            quarantine_out = lake.open_writer(quarantine_dir, _quarantine_schema(pa.schema([])))
        result.reasons = dict(validator.reasons.most_common())
        result.schema_errors = list(validator.schema_errors)
        result.seconds = time.perf_counter() - started
        result.quarantine_path = quarantine_out.commit({"staged_id": result.staged_id}).path
        written = items_out.commit(result.footer())
    except BaseException:
        with contextlib.suppress(BaseException):
            validated.close()  # stops the extract thread and closes the warehouse cursor
        with contextlib.suppress(BaseException):
            writer.close()
        items_out.abort()
        if quarantine_out is not None:
            quarantine_out.abort()
        raise
    if written.rows != result.valid:  # invariant: every valid row became one staged item
        raise RuntimeError(f"staged {written.rows} items for {result.valid} valid rows")
    result.path, result.bytes = written.path, written.bytes
    result.seconds = time.perf_counter() - started
    return result


# ---- upload ----------------------------------------------------------------------------------
@dataclass
class UploadProgress:
    """Progress of a catalog upload, reported after every acknowledged batch."""

    batch: int
    batches: int
    processed: int
    total: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0  # items of batches acknowledged by an earlier attempt (checkpoint)
    stale: int = 0  # items the catalog holds with a newer last_modified (left as they are)
    seconds: float = 0.0
    rejected_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eta_seconds(self) -> float | None:
        done = self.processed - self.skipped
        if done <= 0 or self.seconds <= 0:
            return None
        return (self.total - self.processed) / (done / self.seconds)

    @property
    def items_per_second(self) -> float:
        done = self.processed - self.skipped
        return done / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        eta = self.eta_seconds
        return (f"batch {self.batch}/{self.batches}: {self.processed}/{self.total} processed, "
                f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.rejected} rejected, {self.skipped} skipped (checkpoint)"
                + (f", {self.stale} {KEPT_NEWER}" if self.stale else "")
                + (f", ETA {eta:.0f}s" if eta is not None else ""))


def rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Regroup ``batches`` into tables of exactly ``size`` rows (the last one may be shorter),
    so that batch numbers are stable whatever the source's chunking."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks()
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks()


@dataclass
class Diff:
    """Items of one batch to upload, and how many the catalog already has (same or newer)."""

    todo: pa.Table
    unchanged: int
    stale: int  # the catalog holds a newer row of the key (an older partition ran later)


def changed_items(items: pa.Table, known: KnownItems) -> Diff:
    """Rows of ``items`` that the catalog lacks or holds with another content hash, except
    those whose catalog copy has a newer ``last_modified`` (kept: newest row wins)."""
    if not known.hashes:
        return Diff(items, 0, 0)
    ids = pa.array(list(known.hashes), pa.string())
    index = pc.index_in(items.column("item_id"), value_set=ids)
    catalog_hash = pc.take(pa.array(list(known.hashes.values()), pa.string()), index)
    same = pc.fill_null(pc.equal(catalog_hash, items.column("content_hash")), False)
    keep = same
    if known.last_modified:
        catalog_stamp = pc.take(
            _timestamps([known.last_modified.get(i) for i in known.hashes]), index)
        newer = pc.fill_null(pc.greater(catalog_stamp, items.column("last_modified")), False)
        keep = pc.or_(same, newer)
    todo = items.filter(pc.invert(keep))
    n_same = pc.sum(same).as_py() or 0
    return Diff(todo, n_same, items.num_rows - todo.num_rows - n_same)


def _timestamps(stamps: list[str | None]) -> pa.Array:
    """ISO-8601 strings as naive UTC microsecond timestamps (unparseable -> null)."""
    strings = pa.array(stamps, pa.string())
    for zone in ("UTC", None):  # all with an offset (what our client sends), or all without
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pc.cast(pc.cast(strings, pa.timestamp("us", tz=zone)), pa.timestamp("us"))
    return pa.array([_parse_naive_utc(s) for s in stamps], pa.timestamp("us"))  # mixed: rare


def _parse_naive_utc(stamp: str | None) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _diff_and_upload(batch: pa.Table, source: BladeSource,
                     catalog: CatalogClient) -> tuple[BatchResult, Diff]:
    """Upload the items of ``batch`` the catalog lacks or holds with an older row."""
    diff = changed_items(batch, catalog.lookup_known(batch.column("item_id")))
    return catalog.upload_batch(diff.todo, source.catalog_data_source), diff


def upload(items: Iterator[pa.Table], total: int, source: BladeSource, catalog: CatalogClient,
           checkpoint: Checkpoint, on_progress: Callable[[UploadProgress], None] | None = None,
           ) -> UploadProgress:
    """Diff each batch against the catalog and upload only new or changed items.

    ``items`` yields batches of ``checkpoint.batch_size`` rows in a stable order (the staged
    file). Batches the checkpoint lists as acknowledged are skipped. Up to
    ``catalog.parallel_uploads`` batches are in flight; after every acknowledged batch the
    checkpoint is saved and progress reported.
    """
    batches = max(1, -(-total // checkpoint.batch_size))
    progress = UploadProgress(batch=0, batches=batches, processed=0, total=total)
    started = time.perf_counter()
    in_flight: dict[Future, tuple[int, int]] = {}

    def settle(done: set[Future]) -> None:
        for future in done:
            index, rows = in_flight.pop(future)
            result, diff = future.result()
            progress.created += result.created
            progress.updated += result.updated
            progress.unchanged += result.unchanged + diff.unchanged
            progress.stale += diff.stale + result.stale
            progress.rejected += len(result.rejected)
            progress.rejected_items.extend(result.rejected[:100])
            progress.processed += rows
            progress.batch = len(checkpoint.acknowledged) + 1
            progress.seconds = time.perf_counter() - started
            checkpoint.acknowledge(index, progress)
            if on_progress:
                on_progress(progress)

    with ThreadPoolExecutor(catalog.parallel_uploads, thread_name_prefix="upload") as pool:
        try:
            for index, batch in enumerate(items):
                if index in checkpoint.acknowledged:
                    progress.processed += batch.num_rows
                    progress.skipped += batch.num_rows
                    continue
                while len(in_flight) >= catalog.parallel_uploads:
                    settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
                future = pool.submit(_diff_and_upload, batch, source, catalog)
                in_flight[future] = (index, batch.num_rows)
            while in_flight:
                settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
        finally:
            for future in in_flight:
                future.cancel()
    progress.seconds = time.perf_counter() - started
    return progress


@dataclass
class Checkpoint:
    """Durable upload progress of one staged partition (a JSON file in the lake).

    Valid only for the staged file it was taken on (``staged_id``); the catalog stays the source
    of truth, so a lost or stale checkpoint costs a re-diff, never a loss or a duplicate.
    """

    lake: ParquetLake
    path: str
    staged_id: str
    batch_size: int
    acknowledged: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, lake: ParquetLake, path: str, staged_id: str, batch_size: int) -> Checkpoint:
        saved = lake.read_json(path) or {}
        acked: set[int] = set()
        if saved.get("staged_id") == staged_id and saved.get("batch_size") == batch_size:
            acked = set(saved.get("acknowledged", []))
        return cls(lake, path, staged_id, batch_size, acked)

    def acknowledge(self, index: int, progress: UploadProgress) -> None:
        """Record batch ``index`` as acknowledged by the catalog (durably, before returning)."""
        self.acknowledged.add(index)
        self.lake.write_json(self.path, {
            "staged_id": self.staged_id, "batch_size": self.batch_size,
            "acknowledged": sorted(self.acknowledged), "processed": progress.processed,
            "total": progress.total, "updated_at": dt.datetime.now(dt.UTC).isoformat(),
        })
