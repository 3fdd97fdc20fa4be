"""Validate raw batches with the data type's Pandera model; split valid rows from quarantine.

Row-level failures become a reason per row (column, rule, offending value). Failures that have
no row (a required column missing or retyped) are schema errors: every row of the batch is
quarantined with them, and the staged asset's blocking check reports them.
Duplicate primary keys are found across the whole partition: extraction is ordered by key and
then watermark (newest first), so the newest row of a key is kept and later ones quarantined.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandera.polars as pa_pl
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.schemas import row_model
from blade_pipeline.sources import BladeSource

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"


@dataclass
class BatchOutcome:
    """One validated batch."""

    valid: pa.RecordBatch
    quarantined: pa.Table  # raw columns + _row + _reason
    schema_errors: list[str]


@dataclass
class PartitionValidator:
    """Validates the batches of one partition in order (keeps state across batches)."""

    source: BladeSource
    rows_seen: int = 0
    reasons: Counter = field(default_factory=Counter)
    schema_errors: list[str] = field(default_factory=list)
    _last_key: object = None

    def __post_init__(self) -> None:
        self.model = row_model(self.source.data_type)

    def _failure_cases(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        try:
            self.model.validate(frame, lazy=True)
        except pa_pl.errors.SchemaErrors as exc:
            return exc.failure_cases
        return None

    @staticmethod
    def _schema_error_text(case: dict) -> str:
        check, column, value = case["check"], case["column"], case["failure_case"]
        if check == "column_in_dataframe":
            return f"required column '{value}' is missing"
        if str(check).startswith("dtype("):
            expected = str(check)[len("dtype('"):-2]
            return f"column '{column}' has type {value}, expected {expected}"
        return f"column '{column}': {check} could not be evaluated ({value})"

    def _duplicate_mask(self, keys: pa.Array) -> pa.Array:
        previous = pa.concat_arrays([pa.array([self._last_key], keys.type), keys[:-1]]) \
            if len(keys) else keys
        dup = pc.fill_null(pc.equal(keys, previous), False)
        if len(keys):
            self._last_key = keys[-1].as_py()
        return dup

    def validate(self, batch: pa.RecordBatch) -> BatchOutcome:
        """Split ``batch`` into valid rows and quarantined rows with reasons."""
        n = batch.num_rows
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        cases = self._failure_cases(frame)
        schema_errors: list[str] = []
        row_reasons = pl.Series("r", [None] * n, dtype=pl.String)
        if cases is not None:
            cases = cases.with_columns(pl.col("failure_case").cast(pl.String))
            for case in cases.filter(pl.col("index").is_null()).iter_rows(named=True):
                schema_errors.append(self._schema_error_text(case))
            row_cases = cases.filter(pl.col("index").is_not_null())
            for column, check, count in row_cases.group_by("column", "check").len().iter_rows():
                self.reasons[f"{column}: {check}"] += count
            per_row = (
                row_cases
                .with_columns(pl.format("{}: {} (got {})", "column", "check",
                                        pl.col("failure_case").fill_null("null")).alias("why"))
                .group_by("index").agg(pl.col("why").str.join("; "))
            )
            if per_row.height:
                row_reasons = (
                    pl.DataFrame({"index": pl.arange(0, n, eager=True, dtype=pl.Int32)})
                    .join(per_row, on="index", how="left", maintain_order="left")["why"]
                )
        reasons = pa.array(row_reasons.to_arrow(), pa.string()) if n else pa.array([], pa.string())
        if self.source.primary_key in batch.schema.names:
            dup = self._duplicate_mask(batch.column(self.source.primary_key))
            dup_reason = f"duplicate primary key {self.source.primary_key} (a newer row kept)"
            self.reasons["duplicate primary key"] += pc.sum(dup).as_py() or 0
            reasons = pc.if_else(
                dup, pc.if_else(pc.is_null(reasons), dup_reason,
                                pc.binary_join_element_wise(reasons, dup_reason, "; ")),
                reasons)
        if schema_errors:
            reasons = pa.array(["; ".join(schema_errors)] * n, pa.string())
            for error in schema_errors:
                self.reasons[error] += n
                if error not in self.schema_errors:
                    self.schema_errors.append(error)
        bad = pc.is_valid(reasons)
        rows = pa.array(np.arange(self.rows_seen, self.rows_seen + n, dtype=np.int64))
        self.rows_seen += n
        quarantined = pa.Table.from_batches([batch]).filter(bad)
        quarantined = quarantined.append_column(ROW_COLUMN, rows.filter(bad)).append_column(
            REASON_COLUMN, reasons.filter(bad))
        return BatchOutcome(batch.filter(pc.invert(bad)), quarantined, schema_errors)
