"""Validate raw batches with the data type's Pandera model; split valid rows from quarantine.

Row-level failures become a reason per row (column, rule, offending value), as Pandera names
them (found in one pass by :mod:`blade_pipeline.steps.row_screen`, or by Pandera itself when
the screen cannot tell). Failures that have
no row (a required column missing or retyped) are schema errors: every row of the batch is
quarantined with them, and the staged asset's blocking check reports them.
Duplicate primary keys are found across the whole partition without ordering the extract: the
warehouse first lists the keys held by more than one row with their newest watermark
(:func:`blade_pipeline.sources.sql.duplicate_keys`, a small aggregate); the first row
carrying a key's newest watermark is kept, every other row of the key is quarantined, whatever
batch it arrives in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandera.polars as pa_pl
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.pandera_models import row_model
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.steps import schema_policy
from blade_pipeline.steps.row_screen import RowScreen
from blade_pipeline.steps.schema_policy import SchemaPlan

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"


@dataclass
class BatchOutcome:
    """One validated batch: its rows, which of them are valid, and the quarantined ones."""

    rows: pa.RecordBatch
    keep: pa.BooleanArray | None  # the valid rows of ``rows``; None when all are valid
    quarantined: pa.Table  # raw columns + _row + _reason
    schema_errors: list[str]
    #: position in ``rows`` of each quarantined row (ascending)
    bad_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: one entry per failure: its position in ``rows`` and its reason key (as counted in
    #: ``reasons``); schema errors are not listed (they apply to every row)
    failure_rows: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _no_failures())

    @property
    def valid_rows(self) -> int:
        return self.rows.num_rows - self.quarantined.num_rows

    @cached_property
    def valid(self) -> pa.RecordBatch:
        """The valid rows as a batch of their own (a copy unless all rows are valid; the stage
        hands ``rows`` + ``keep`` to the item builder instead, which filters in passing)."""
        return self.rows if self.keep is None else self.rows.filter(self.keep)

def _no_failures() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, object)


DUPLICATE_KEY_COLUMNS = ("key", "newest")
DUPLICATE_REASON = "duplicate primary key"


def _day_keys(days: pa.Array, keys: pa.Array) -> pa.Array:
    """``day|key`` strings: a key's identity within one day."""
    return pc.binary_join_element_wise(days.cast(pa.date32()).cast(pa.string()),
                                       keys.cast(pa.string()), "|")


@dataclass
class PartitionValidator:
    """Validates the batches of one partition (keeps state across batches).

    ``duplicates`` is the answer of :func:`~blade_pipeline.sources.sql.duplicate_keys` for
    the same rows, or its future
    (none: no key repeats). ``planner`` makes the run's :class:`SchemaPlan` from the first
    batch's schema (default: fit the batch to the model, no versions); every batch is fitted
    by it before Pandera sees it."""

    source: BladeSource
    duplicates: pa.Table | Future[pa.Table] | None = None
    planner: Callable[[pa.Schema], SchemaPlan] | None = None
    plan: SchemaPlan | None = None
    rows_seen: int = 0
    reasons: Counter = field(default_factory=Counter)
    schema_errors: list[str] = field(default_factory=list)
    _kept: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    _dup_keys: pa.ChunkedArray | None = None

    def __post_init__(self) -> None:
        self.model = row_model(self.source.model_name)
        self.screen = RowScreen(self.model)

    def _pandera_failures(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        try:
            self.model.validate(frame, lazy=True)
        except pa_pl.errors.SchemaErrors as exc:
            return exc.failure_cases
        return None

    def _failure_cases(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """Pandera's failure cases of ``frame`` (None: every row passes), from the screen
        where it can tell, else from Pandera itself."""
        cases = self.screen.failure_cases(frame)
        if cases is None:
            return self._pandera_failures(frame)
        return cases if cases.height else None

    @staticmethod
    def _schema_error_text(case: dict) -> str:
        check, column, value = case["check"], case["column"], case["failure_case"]
        if check == "column_in_dataframe":
            return f"required column '{value}' is missing"
        if str(check).startswith("dtype("):
            expected = str(check)[len("dtype('"):-2]
            return f"column '{column}' has type {value}, expected {expected}"
        return f"column '{column}': {check} could not be evaluated ({value})"

    def _duplicate_mask(self, batch: pa.RecordBatch) -> pa.Array | None:
        """Rows repeating a key whose kept row is another one (None: no such row here)."""
        pk, wm = self.source.primary_key, self.source.watermark_column
        if isinstance(self.duplicates, Future):
            self.duplicates = self.duplicates.result()
        dups = self.duplicates
        if dups is None or not dups.num_rows or pk not in batch.schema.names \
                or wm not in batch.schema.names:
            return None
        keys = batch.column(pk)
        if "day" in dups.schema.names:  # duplicates within a day (sources.sql.duplicate_keys)
            if not isinstance(self._dup_keys, pa.ChunkedArray):
                self._dup_keys = _day_keys(dups["day"], dups["key"])
            keys, wanted = _day_keys(batch.column(wm), keys), self._dup_keys
        else:
            keys, wanted = keys.cast(dups.schema.field("key").type), dups["key"]
        index = pc.index_in(keys, value_set=wanted)
        repeated = pc.is_valid(index)
        if not pc.any(repeated).as_py():
            return None
        newest = pc.take(dups["newest"], index)
        stamps = batch.column(wm).cast(newest.type)
        rows = pa.table({"key": keys.cast(pa.string()),
                         "pos": pa.array(np.arange(batch.num_rows, dtype=np.int64))})
        candidates = rows.filter(pc.and_(
            pc.fill_null(pc.equal(stamps, newest), False),
            pc.invert(pc.is_in(rows["key"], value_set=self._kept))))
        first = candidates.group_by("key", use_threads=False).aggregate([("pos", "min")])
        self._kept = pa.concat_arrays([self._kept, first["key"].combine_chunks()])
        keep = np.zeros(batch.num_rows, dtype=bool)
        keep[first["pos_min"].to_numpy()] = True
        return pc.and_(repeated, pc.invert(pa.array(keep)))

    def validate(self, raw: pa.RecordBatch) -> BatchOutcome:
        """Split ``raw`` into valid rows (fitted by the plan) and quarantined rows (as they
        came) with reasons.

        Reasons are built for the failing rows only (a few per cent), never per row of the
        batch; a batch without failures (and nothing to fit) passes through uncopied."""
        if self.plan is None:
            self.plan = (self.planner or (lambda schema: schema_policy.plan(
                self.source, schema)))(raw.schema)
        batch, rescued = self.plan.conform(raw)
        n = batch.num_rows
        cases = self._failure_cases(pl.from_arrow(pa.Table.from_batches([batch])))
        schema_errors: list[str] = []
        failing: list[pl.DataFrame] = []  # (index, why) of failing rows
        if rescued is not None:
            for reason, count in rescued.group_by("reason").len().iter_rows():
                self.reasons[reason] += count
            failing.append(rescued.select("index", "why", "reason"))
        if cases is not None:
            cases = cases.with_columns(pl.col("failure_case").cast(pl.String))
            if rescued is not None:  # a rescued value is NULL now: that is not news
                cases = cases.join(rescued.select(pl.col("index").cast(cases["index"].dtype),
                                                  "column"), on=["index", "column"],
                                   how="anti", nulls_equal=True)
            for case in cases.filter(pl.col("index").is_null()).iter_rows(named=True):
                schema_errors.append(self._schema_error_text(case))
            row_cases = cases.filter(pl.col("index").is_not_null())
            for column, check, count in row_cases.group_by("column", "check").len().iter_rows():
                self.reasons[f"{column}: {check}"] += count
            failing.append(row_cases.select(
                pl.col("index").cast(pl.Int64),
                pl.format("{}: {} (got {})", "column", "check",
                          pl.col("failure_case").fill_null("null")).alias("why"),
                pl.format("{}: {}", "column", "check").alias("reason")))
        dup = self._duplicate_mask(batch)
        if dup is not None:
            dup_rows = np.flatnonzero(dup.to_numpy(zero_copy_only=False))
            self.reasons[DUPLICATE_REASON] += len(dup_rows)
            failing.append(pl.DataFrame({
                "index": dup_rows.astype(np.int64),
                "why": [f"{DUPLICATE_REASON} {self.source.primary_key} (the row with the "
                        f"newest {self.source.watermark_column} is kept)"] * len(dup_rows),
                "reason": [DUPLICATE_REASON] * len(dup_rows)},
                schema={"index": pl.Int64, "why": pl.String, "reason": pl.String}))
        failures = _no_failures()
        if failing and not schema_errors:
            listed = pl.concat(failing)
            failures = (listed["index"].to_numpy(), listed["reason"].to_numpy().astype(object))
        if schema_errors:
            bad_rows = np.arange(n, dtype=np.int64)
            why = pa.array(["; ".join(schema_errors)] * n, pa.string())
            for error in schema_errors:
                self.reasons[error] += n
                if error not in self.schema_errors:
                    self.schema_errors.append(error)
        else:
            merged = (pl.concat(failing).group_by("index", maintain_order=True)
                      .agg(pl.col("why").str.join("; ")).sort("index")
                      if failing else pl.DataFrame(schema={"index": pl.Int64, "why": pl.String}))
            bad_rows = merged["index"].to_numpy()
            why = merged["why"].to_arrow().cast(pa.string())
        first_row, self.rows_seen = self.rows_seen, self.rows_seen + n
        quarantined = pa.Table.from_batches([raw]).take(bad_rows)
        quarantined = quarantined.append_column(
            ROW_COLUMN, pa.array(bad_rows + first_row, pa.int64())).append_column(
            REASON_COLUMN, why)
        if not len(bad_rows):
            return BatchOutcome(batch, None, quarantined, schema_errors)
        keep = np.ones(n, dtype=bool)
        keep[bad_rows] = False
        return BatchOutcome(batch, pa.array(keep), quarantined, schema_errors,
                            np.asarray(bad_rows, np.int64), failures)
