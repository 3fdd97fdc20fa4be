"""What a change of a source's schema does: its ``schema_policy`` applied to one run.

A run's first batch shows the schema it observes. Against the *expected* version (see
``SchemaHistory``) every change gets a decision from the source's policy:

=================  ==========================================================================
ADD_COLUMN         ``evolve``: carried into the items (WARN) · ``ignore``: left out of the
                   items (they do not churn; the check passes and lists it) · ``fail``: blocked
DROP_COLUMN        ``allow`` and the model does not require it: its values read as NULL (WARN)
                   · otherwise blocked
CHANGE_TYPE        ``widen`` and widening: goes on (WARN) · narrowing, or ``fail``: blocked
NULLABILITY        noted (WARN): the model's own rules judge every value
=================  ==========================================================================

A blocked change fails the blocking ``schema_changed`` check (ERROR): the day is staged but
not uploaded until ``blade schema accept``. When nothing is blocked or ignored (and nothing is
pinned) the run *adopts* the observed version as the expected one once its days are staged,
so a change warns on the run that met it, not on every later one.

Whatever the policy, rows are made to fit the model where they can (``conform``): a column the
source widened (int → bigint, decimal(12,2) → decimal(18,2), date → timestamp_ntz) is cast
back to the model's type, and a value that does not fit is *rescued*: its row is quarantined
with the column, the value and the schema versions named, and the other rows go on. A dropped
column the model admits NULL for is read as NULL. So what the policy blocks is ready to upload
the moment it is accepted.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.pandera_models import ModelColumn, model_columns
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.steps.schema_versions import (
    Change,
    Column,
    SchemaHistory,
    SchemaVersion,
    databricks_type,
    diff,
    is_widening,
    observe,
)

BLOCKED, IGNORED = "blocked", "ignored"
WARNED = ("evolved", "widened", "allowed", "noted")


@dataclass(frozen=True)
class Decision:
    """What the policy does with one change."""

    change: Change
    outcome: str  # blocked, ignored, or one of WARNED
    rule: str  # the policy setting (or the reason) that decided it

    def describe(self) -> str:
        return f"{self.change.describe()}: {self.outcome} ({self.rule})"


def decide(source: BladeSource, change: Change) -> Decision:
    """The policy's decision on one change against the expected version."""
    policy, model = source.schema_policy, model_columns(source.model_name)
    column = model.get(change.column)
    if change.kind == "ADD_COLUMN":
        if column is not None:  # the model needs it: never left out or blocked
            return Decision(change, "evolved", "a column the model declares")
        outcome = {"evolve": "evolved", "ignore": IGNORED, "fail": BLOCKED}[
            policy.on_new_column]
        return Decision(change, outcome, f"on_new_column: {policy.on_new_column}")
    if change.kind == "DROP_COLUMN":
        if column is not None and not column.nullable:
            return Decision(change, BLOCKED, "the model requires it")
        outcome = "allowed" if policy.on_dropped_column == "allow" else BLOCKED
        return Decision(change, outcome, f"on_dropped_column: {policy.on_dropped_column}")
    if change.kind == "CHANGE_TYPE":
        if not change.widening:
            return Decision(change, BLOCKED, "narrowing")
        outcome = "widened" if policy.on_type_change == "widen" else BLOCKED
        return Decision(change, outcome, f"on_type_change: {policy.on_type_change}")
    return Decision(change, "noted", "the model's rules judge each value")


@dataclass(frozen=True)
class Cast:
    """A model column the source sends in a wider type: cast back, rows that do not fit
    rescued."""

    column: str
    target: pa.DataType
    sent: str  # the Databricks type the source sends
    model: str  # the Databricks type of the model's column


@dataclass(frozen=True)
class SchemaPlan:
    """One run's schema: the version it observes, the expected one, the decisions, and how
    each batch is made to fit the model."""

    columns: tuple[Column, ...]
    observed: int | None = None  # its version number (None: not versioned, e.g. a query job)
    expected: int | None = None
    pinned: bool = False
    decisions: tuple[Decision, ...] = ()
    drop: tuple[str, ...] = ()  # ignored new columns
    fill: tuple[tuple[str, pa.DataType], ...] = ()  # dropped columns read as NULL
    casts: tuple[Cast, ...] = ()
    rescue_reasons: dict[str, str] = field(default_factory=dict)

    def of(self, outcome: str | tuple[str, ...]) -> list[str]:
        wanted = (outcome,) if isinstance(outcome, str) else outcome
        return [d.describe() for d in self.decisions if d.outcome in wanted]

    @property
    def blocked(self) -> list[str]:
        return self.of(BLOCKED)

    @property
    def adopts(self) -> bool:
        """Whether the run makes the observed version the expected one when it succeeds."""
        return (self.observed is not None and self.expected is not None
                and self.observed != self.expected
                and not self.pinned and not self.of((BLOCKED, IGNORED)))

    def footer(self) -> dict[str, Any]:
        """What each staged day records (read by the ``schema_changed`` check)."""
        return {"version": self.observed, "expected": self.expected, "pinned": self.pinned,
                "blocked": self.blocked, "warned": self.of(WARNED),
                "ignored": self.of(IGNORED), "rescued_columns": [c.column for c in self.casts]}

    def conform(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pl.DataFrame | None]:
        """``batch`` fitted to the model, and the rows rescued (``index``, ``column``,
        ``why``, ``reason``) whose value of a widened column does not fit the model's type (their
        value is NULL in the fitted batch; the quarantine keeps the original row)."""
        if not (self.drop or self.fill or self.casts):
            return batch, None
        names = list(batch.schema.names)
        arrays = list(batch.columns)
        rescued: list[pl.DataFrame] = []
        for cast in self.casts:
            at = names.index(cast.column)
            fitted, misfit = fit(arrays[at], cast.target)
            arrays[at] = fitted
            rows = np.flatnonzero(misfit.to_numpy(zero_copy_only=False))
            if len(rows):
                values = pc.fill_null(pc.take(batch.column(at), pa.array(rows))
                                      .cast(pa.string()), "null")
                reason = self.rescue_reasons[cast.column]
                why = pc.binary_join_element_wise(pa.scalar(reason + " (got "), values,
                                                  pa.scalar(")"), "")
                rescued.append(pl.DataFrame({
                    "index": rows.astype(np.int64), "column": cast.column,
                    "why": pl.from_arrow(why).cast(pl.String),
                    "reason": [reason] * len(rows)}))
        for name, arrow_type in self.fill:
            names.append(name)
            arrays.append(pa.nulls(batch.num_rows, arrow_type))
        keep = [i for i, name in enumerate(names) if name not in self.drop]
        fitted = pa.RecordBatch.from_arrays([arrays[i] for i in keep],
                                            names=[names[i] for i in keep])
        return fitted, (pl.concat(rescued) if rescued else None)


def fit(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.BooleanArray]:
    """``values`` cast to ``target`` and which of them do not fit it (NULL there): a value
    fits when it survives the cast and back unchanged (and, for a decimal, its integer digits
    fit the precision)."""
    cast = pc.cast(values, target, safe=False)
    misfit = pc.fill_null(pc.not_equal(pc.cast(cast, values.type, safe=False), values), False)
    if pa.types.is_decimal(target) and pa.types.is_decimal(values.type):
        digits, scale = target.precision - target.scale, values.type.scale
        if digits + 1 + scale <= 38:  # else no value of this type is that large
            limit = pa.scalar(decimal.Decimal(10) ** digits,
                              pa.decimal128(digits + 1 + scale, scale))
            misfit = pc.or_(misfit, pc.fill_null(pc.greater_equal(pc.abs(values), limit),
                                                 False))
    if pc.any(misfit).as_py():
        cast = pc.if_else(misfit, pa.scalar(None, target), cast)
    return cast, misfit


def _model_casts(model: dict[str, ModelColumn], columns: Sequence[Column]) -> list[Cast]:
    casts = []
    for column in columns:
        want = model.get(column.name)
        if want is None:
            continue
        model_type = databricks_type(want.arrow_type)
        if column.databricks_type != model_type and is_widening(model_type,
                                                                column.databricks_type):
            casts.append(Cast(column.name, want.arrow_type, column.databricks_type,
                              model_type))
    return casts


def plan(source: BladeSource, schema: pa.Schema, observed: int | None = None,
         expected: SchemaVersion | None = None, pinned: bool = False) -> SchemaPlan:
    """The plan of a run observing ``schema`` (version ``observed``) against ``expected``
    (None: no version yet, or not versioned: nothing to decide, the batch is only fitted)."""
    columns = observe(schema)
    model = model_columns(source.model_name)
    decisions = tuple(decide(source, change) for change in diff(expected.columns, columns)
                      ) if expected is not None else ()
    present = {c.name for c in columns}
    fill = tuple((name, want.arrow_type) for name, want in model.items()
                 if name not in present and want.nullable)
    casts = tuple(_model_casts(model, columns))
    broke = f"schema v{expected.version}" if expected is not None else "the model"
    sent = f", v{observed}" if observed is not None else ""
    reasons = {c.column: f"{c.column}: does not fit {c.model} ({broke}; the source sends "
                         f"{c.sent}{sent})" for c in casts}
    return SchemaPlan(
        columns=columns, observed=observed,
        expected=expected.version if expected is not None else None, pinned=pinned,
        decisions=decisions, drop=tuple(d.change.column for d in decisions
                                        if d.outcome == IGNORED),
        fill=fill, casts=casts, rescue_reasons=reasons)


def plan_run(source: BladeSource, history: SchemaHistory, schema: pa.Schema) -> SchemaPlan:
    """The plan of a staging run, from the source's history in the lake. The version number
    of a schema not seen before is the next one (written by :func:`finish_run`)."""
    columns = observe(schema)
    newest = history.newest()
    if newest is None:
        observed = 1
    elif newest.columns == columns:
        observed = newest.version
    else:
        observed = newest.version + 1
    expected, pinned = history.expected_version()
    return plan(source, schema, observed, expected, pinned)


@dataclass(frozen=True)
class RunSchema:
    """What a staging run did to the history."""

    version: SchemaVersion
    new: bool  # this run wrote the version
    adopted: bool  # this run made it the expected one


def finish_run(plan: SchemaPlan, history: SchemaHistory, run_id: str) -> RunSchema:
    """After the run's days are staged: record the observed version (if new) and adopt it
    when the plan says so. A run that fails before this records nothing."""
    version, new = history.record(plan.columns, run_id)
    adopted = plan.adopts and version.version == plan.observed
    if adopted:
        history.set_expected(version.version, "adopt", f"run {run_id}",
                             "every change allowed by the source's schema_policy: "
                             + "; ".join(d.describe() for d in plan.decisions))
    return RunSchema(version, new, adopted)
