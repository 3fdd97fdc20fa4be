"""Stage validated rows as BLADE items in Parquet: one output, or one partition per day.

``stage`` writes one items file and one quarantine file (the query job); ``stage_days`` splits
a range's rows by the day of their watermark and writes each day's partition exactly as a run
of that day alone would (own files, own footer, own ``_row`` numbering, own reasons), one day
open at a time: the range query is ordered by the watermark, so a day is complete when the next
one starts and memory stays bounded by the batch, whatever the range.

Three threads: extract + validate | build items (the caller's) | write. Each day's files are
published atomically when the day is complete; on error the open days are dropped (days
published before the error stay, each complete).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.pandera_models import required_columns
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.steps.items import ITEM_SCHEMA, IngestRun, ItemBuilder
from blade_pipeline.steps.pipelining import WriteBehind, prefetch
from blade_pipeline.steps.schema_policy import SchemaPlan
from blade_pipeline.steps.validation import (
    REASON_COLUMN,
    ROW_COLUMN,
    BatchOutcome,
    PartitionValidator,
)
from blade_pipeline.storage.lake import ParquetLake, PartitionWriter

PREVIEW_ROWS = 5


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
    #: the run's schema: observed and expected versions, the policy's decisions
    schema: dict[str, Any] = field(default_factory=dict)
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
        """What the staged file's footer records (read back by the asset checks): every field
        but the preview (a shallow copy: no deep copy of the preview rows per call)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preview"}


@dataclass
class RangeProgress:
    """Progress of a range being staged, reported after every batch."""

    days_total: int
    days_done: int = 0
    extracted: int = 0
    valid: int = 0
    quarantined: int = 0
    seconds: float = 0.0

    @property
    def eta_seconds(self) -> float | None:
        if not self.days_done or self.days_done >= self.days_total:
            return None
        return self.seconds / self.days_done * (self.days_total - self.days_done)

    def summary(self) -> str:
        eta = self.eta_seconds
        return (f"{self.days_done}/{self.days_total} days staged, {self.extracted} rows "
                f"({self.valid} valid items, {self.quarantined} quarantined)"
                + (f", ETA {eta:.0f}s" if eta is not None else ""))


def day_range_bounds(first: str, last: str) -> dict[str, dt.datetime]:
    """Query parameters of the days ``first``..``last`` (``YYYY-MM-DD``, both included)."""
    start = dt.datetime.fromisoformat(first)
    return {"start": start, "end": dt.datetime.fromisoformat(last) + dt.timedelta(days=1)}


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


def _day_runs(batch: pa.RecordBatch, watermark: str) -> list[tuple[str, int, int]]:
    """(day, start, stop) of each run of consecutive rows sharing the watermark's UTC day."""
    stamps = batch.column(watermark)
    if pa.types.is_timestamp(stamps.type) and stamps.type.tz is not None:
        stamps = pc.cast(stamps, pa.timestamp(stamps.type.unit))  # the UTC wall clock
    try:
        days = pc.cast(stamps, pa.date32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"watermark column '{watermark}' ({stamps.type}) has no date: "
                         f"{exc}") from None
    if np.isnat(days).any():
        raise ValueError(f"watermark column '{watermark}' has nulls inside the range")
    if not len(days):  # a batch without rows holds no day
        return []
    edges = np.flatnonzero(days[1:] != days[:-1]) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [len(days)]))
    return [(str(days[s]), int(s), int(e)) for s, e in zip(starts, stops, strict=True)]


@dataclass
class _Output:
    """One partition being written: its two files and its counts."""

    key: str
    result: StageResult
    items_out: PartitionWriter
    quarantine_out: PartitionWriter
    started: float
    reasons: Counter = field(default_factory=Counter)

    def abort(self) -> None:
        self.items_out.abort()
        self.quarantine_out.abort()

    def commit(self) -> None:
        """Publish both files (quarantine first: the items file is what readers look for)."""
        result = self.result
        result.quarantine_path = self.quarantine_out.commit({"staged_id": result.staged_id}).path
        written = self.items_out.commit(result.footer())
        if written.rows != result.valid:  # invariant: every valid row became one staged item
            raise RuntimeError(f"staged {written.rows} items for {result.valid} valid rows")
        result.path, result.bytes = written.path, written.bytes


class _Stager:
    """The state of one ``stage``/``stage_days`` call (see the module docstring): the build
    thread adds rows partition by partition; the writer thread writes and publishes them."""

    def __init__(self, source: BladeSource, lake: ParquetLake,
                 dirs: Callable[[str], tuple[str, str]], run: IngestRun,
                 duplicates: pa.Table | Future[pa.Table] | None,
                 planner: Callable[[pa.Schema], SchemaPlan] | None = None):
        self.source, self.lake, self.dirs, self.run = source, lake, dirs, run
        self.validator = PartitionValidator(source, duplicates, planner)
        self.builder = ItemBuilder(source, run)
        self.quarantine_schema: pa.Schema | None = None
        self.extra_columns: list[str] = []
        self.schema: dict[str, Any] = {}
        self.results: dict[str, StageResult] = {}
        self.unpublished: dict[str, _Output] = {}
        self.published: queue.SimpleQueue[_Output] = queue.SimpleQueue()
        self.current: _Output | None = None
        self.writer = WriteBehind(self._write, name="stage-writer")

    def _write(self, task: tuple[_Output, pa.Table | None, pa.Table | None]) -> None:
        out, items, quarantined = task
        if items is None:  # the partition is complete
            out.commit()
            self.published.put(out)
            return
        out.items_out.write(items)
        out.quarantine_out.write(quarantined)

    def _open(self, key: str) -> _Output:
        if key in self.results:
            raise RuntimeError(f"rows of {key} arrived after those of later days: a range "
                               "query must be ordered by its watermark")
        items_dir, quarantine_dir = self.dirs(key)
        result = StageResult(staged_id=uuid.uuid4().hex, extra_columns=list(self.extra_columns),
                             schema=self.schema)
        items_out = self.lake.open_writer(items_dir, ITEM_SCHEMA)
        try:
            quarantine_out = self.lake.open_writer(
                quarantine_dir, self.quarantine_schema or _quarantine_schema(pa.schema([])))
        except BaseException:
            items_out.abort()
            raise
        out = _Output(key, result, items_out, quarantine_out, time.perf_counter())
        self.results[key] = result
        self.unpublished[key] = out
        return out

    def _finish(self, out: _Output) -> None:
        out.result.reasons = dict(out.reasons.most_common())
        out.result.seconds = time.perf_counter() - out.started
        self.writer.put((out, None, None))

    def _switch_to(self, key: str) -> _Output:
        if self.current is None or self.current.key != key:
            if self.current is not None:
                self._finish(self.current)
            self.current = self._open(key)
        return self.current

    def first_batch(self, outcome: BatchOutcome) -> None:
        """The run's schema is known: the quarantine keeps the rows as they came, the items
        carry the observed schema version."""
        self.quarantine_schema = outcome.quarantined.schema
        plan = self.validator.plan
        assert plan is not None
        expected = set(required_columns(self.source.model_name))
        self.extra_columns = [c.name for c in plan.columns if c.name not in expected]
        self.schema = plan.footer() if plan.observed is not None else {}
        if plan.observed is not None:
            self.builder = ItemBuilder(self.source, self.run, plan.observed)

    def add_batch(self, outcome: BatchOutcome,
                  runs: list[tuple[str, int, int]]) -> None:
        """A validated batch whose rows ``start:stop`` belong to partition ``key`` for each
        ``(key, start, stop)`` of ``runs``. Items are built one row group of the batch at a
        time, whatever days it spans (a range's batch holds hundreds of small days: one build
        each would cost ~3 ms of DuckDB overhead per day), then cut by day: the writer starts
        on a batch's first row group while the next one is built."""
        n, step = outcome.rows.num_rows, self.lake.row_group_rows
        keep = outcome.keep
        kept = (np.concatenate(([0], np.cumsum(keep.to_numpy(zero_copy_only=False))))
                if keep is not None else np.arange(n + 1))
        for chunk in range(0, n, step):
            end = min(n, chunk + step)
            items = self.builder.build(outcome.rows.slice(chunk, end - chunk),
                                       keep.slice(chunk, end - chunk) if keep is not None
                                       else None)
            for key, start, stop in runs:
                a, b = max(start, chunk), min(stop, end)
                if a < b:
                    self._add(outcome, key, a, b,
                              items.slice(int(kept[a] - kept[chunk]), int(kept[b] - kept[a])))

    def _add(self, outcome: BatchOutcome, key: str, start: int, stop: int,
             items: pa.Table) -> None:
        """Rows ``start:stop`` of a validated batch, all of partition ``key``, and their
        items (built from the valid ones)."""
        out = self._switch_to(key)
        result, batch, n = out.result, outcome.rows, stop - start
        lo, hi = (int(i) for i in np.searchsorted(outcome.bad_rows, [start, stop]))
        quarantined = outcome.quarantined.slice(lo, hi - lo)
        if start or stop < batch.num_rows or result.extracted:  # number rows within the day
            quarantined = quarantined.set_column(
                quarantined.schema.get_field_index(ROW_COLUMN), ROW_COLUMN,
                pa.array(outcome.bad_rows[lo:hi] - start + result.extracted, pa.int64()))
        if outcome.schema_errors:
            for error in outcome.schema_errors:
                out.reasons[error] += n
                if error not in result.schema_errors:
                    result.schema_errors.append(error)
        elif hi > lo:
            at, reasons = outcome.failure_rows
            out.reasons.update(reasons[(at >= start) & (at < stop)].tolist())
        keep = outcome.keep.slice(start, n) if outcome.keep is not None else None
        rows = batch.slice(start, n)
        self.writer.put((out, items, quarantined))
        result.valid += items.num_rows
        result.extracted += n
        result.quarantined += hi - lo
        if len(result.preview) < PREVIEW_ROWS and n > hi - lo:
            result.preview.extend(_head(rows, keep, PREVIEW_ROWS - len(result.preview)))

    def drain(self) -> Iterator[tuple[str, StageResult]]:
        """(key, result) of the partitions published since the last call."""
        while True:
            try:
                out = self.published.get_nowait()
            except queue.Empty:
                return
            self.unpublished.pop(out.key, None)
            yield out.key, out.result

    def close(self, keys: list[str]) -> None:
        """Publish the last partition and an empty one for every key that had no rows."""
        if self.current is not None:
            self._finish(self.current)
            self.current = None
        for key in keys:
            if key not in self.results:
                self._finish(self._open(key))
        self.writer.close()

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self.writer.close()
        for out in self.unpublished.values():
            out.abort()


def _head(rows: pa.RecordBatch, keep: pa.BooleanArray | None, n: int) -> list[dict]:
    """The first ``n`` valid rows, as dicts (without filtering the whole batch)."""
    if keep is None:
        return rows.slice(0, n).to_pylist()
    return rows.take(pc.indices_nonzero(keep).slice(0, n)).to_pylist()


def _run(stager: _Stager, batches: Iterator[pa.RecordBatch], keys: list[str],
         split: Callable[[pa.RecordBatch], list[tuple[str, int, int]]],
         on_batch: Callable[[], None] | None,
         on_published: Callable[[str, StageResult], None] | None) -> dict[str, StageResult]:
    def report() -> None:
        for key, result in stager.drain():
            if on_published:
                on_published(key, result)

    wanted = set(keys)
    validated = prefetch(_validated(stager.validator, batches), name="extract-validate")
    try:
        for outcome in validated:
            if stager.quarantine_schema is None:
                stager.first_batch(outcome)
            runs = split(outcome.rows)
            outside = [key for key, _, _ in runs if key not in wanted]
            if outside:
                raise RuntimeError(f"rows of {outside[0]} are outside the run's days "
                                   f"{keys[0]}..{keys[-1]}")
            stager.add_batch(outcome, runs)
            if on_batch:
                on_batch()
            report()
        stager.close(keys)
    except BaseException:
        with contextlib.suppress(BaseException):
            validated.close()  # stops the extract thread and closes the warehouse cursor
        stager.abort()
        raise
    report()
    return {key: stager.results[key] for key in keys}


def stage(source: BladeSource, batches: Iterator[pa.RecordBatch], lake: ParquetLake,
          items_dir: str, quarantine_dir: str, run: IngestRun,
          on_batch: Callable[[StageResult], None] | None = None,
          duplicates: pa.Table | Future[pa.Table] | None = None) -> StageResult:
    """Validate, transform and write batches: items to ``items_dir``, invalid rows (with a
    reason each) to ``quarantine_dir``. Both files stream (memory bounded by the batch) and
    are replaced atomically at the end, even when empty; on error neither changes.
    ``duplicates``: :func:`~blade_pipeline.steps.extract.duplicate_keys` of the same rows."""
    stager = _Stager(source, lake, lambda _: (items_dir, quarantine_dir), run, duplicates)
    key = "all"
    results = _run(stager, batches, [key], lambda b: [(key, 0, b.num_rows)],
                   on_batch and (lambda: on_batch(stager.results[key])), None)
    return results[key]


def stage_days(source: BladeSource, batches: Iterator[pa.RecordBatch], lake: ParquetLake,
               days: list[str], run: IngestRun,
               on_batch: Callable[[RangeProgress], None] | None = None,
               on_day: Callable[[str, StageResult], None] | None = None,
               duplicates: pa.Table | Future[pa.Table] | None = None,
               planner: Callable[[pa.Schema], SchemaPlan] | None = None
               ) -> dict[str, StageResult]:
    """Stage the rows of ``days`` (ascending ``YYYY-MM-DD``) into one partition per day.

    ``batches`` are the rows of those days ordered by the watermark (one day needs no order);
    ``duplicates``: ``duplicate_keys`` by day. ``on_day`` is called as each day is published,
    ``on_batch`` after every batch. Every day gets its files, an empty day included.
    ``planner``: the run's schema plan from the first batch's schema (see
    ``schema_policy.plan_run``; default: fitted to the model, not versioned)."""
    started = time.perf_counter()
    progress = RangeProgress(days_total=len(days))
    stager = _Stager(source, lake, lambda day: (
        lake.partition_dir(source.data_type, day),
        lake.partition_dir(source.data_type, day, "quarantine")), run, duplicates, planner)

    def batch_done() -> None:
        results = stager.results.values()
        progress.extracted = sum(r.extracted for r in results)
        progress.valid = sum(r.valid for r in results)
        progress.quarantined = sum(r.quarantined for r in results)
        progress.seconds = time.perf_counter() - started
        # days whose rows are all built (the day being built, if any, is not done)
        progress.days_done = len(stager.results) - (stager.current is not None)
        if on_batch:
            on_batch(progress)

    def published(day: str, result: StageResult) -> None:
        if on_day:
            on_day(day, result)

    watermark = source.watermark_column
    return _run(stager, batches, days, lambda b: _day_runs(b, watermark), batch_done, published)
