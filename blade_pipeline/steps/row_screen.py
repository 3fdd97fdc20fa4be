"""Validate a batch against its Pandera model in one polars pass, with Pandera's own checks.

Pandera validates rule by rule: ~125 polars queries and their Python around them for a
maintenance batch (~0.1 s), whatever the batch holds. The screen evaluates the same rules —
Pandera's own check functions, its null handling (``nullable`` with NaN as null, ``ignore_na``)
and its names for each check — collected in parallel by polars in one call, and writes the
failure cases as Pandera's ``SchemaErrors.failure_cases`` would list them (the same columns,
values, order and ``index``). A test holds the two to the same answer on every kind of invalid
row the generator makes.

A rule's verdict on a row must depend on that row only (the row models hold row-level rules;
key uniqueness across a partition is the validator's). Where the screen cannot vouch for a
batch — a column missing or of another type, a rule that is not one verdict per row, a check
that raises, a schema option it does not reproduce — it answers None and the batch goes to
Pandera as a whole.
"""

from __future__ import annotations

import numpy as np
import pandera.polars as pa_pl
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.constants import CHECK_OUTPUT_KEY

# Pandera registers its polars backends and check implementations (importing hypothesis)
# inside the first validate(); the screen calls the checks itself, so they are registered here,
# at code load (~0.2 s) instead of inside a run's first batch.
pa_pl.DataFrameSchema.register_default_backends(pl.LazyFrame)


def _screenable(schema: pa_pl.DataFrameSchema) -> bool:
    """Whether every rule of ``schema`` is a per-row check the screen reproduces."""
    if schema.coerce or schema.unique or getattr(schema, "drop_invalid_rows", False):
        return False
    columns = schema.columns.values()
    if any(c.coerce or c.unique or c.regex or c.default is not None for c in columns):
        return False
    checks = [*schema.checks, *(check for c in columns for check in c.checks)]
    return not any(c.element_wise or c.groupby is not None for c in checks)


class RowScreen:
    """The screen of one Pandera model (see the module doc)."""

    def __init__(self, model: type[pa_pl.DataFrameModel]):
        self.model = model
        self.schema = model.to_schema()
        self.enabled = _screenable(self.schema)
        self.rules = self._rules()
        self._schema_ok: dict[tuple, bool] = {}

    def _fits(self, frame: pl.DataFrame) -> bool:
        """Whether ``frame`` has every column of the model with its type: Pandera's own
        schema checks, on no rows, once per distinct batch schema."""
        key = tuple(frame.schema.items())
        if key not in self._schema_ok:
            try:
                self.model.validate(frame.head(0), lazy=True)
                self._schema_ok[key] = True
            except pa_pl.errors.SchemaErrors:
                self._schema_ok[key] = False
        return self._schema_ok[key]

    def _rules(self) -> list[tuple[str, str, pa_pl.Check | None]]:
        """(column or ``*``, Pandera's name of the check, the check; None: not nullable), in
        the order Pandera reports them: per column its nullability then its checks, then the
        dataframe checks."""
        rules: list[tuple[str, str, pa_pl.Check | None]] = []
        for name, column in self.schema.columns.items():
            if not column.nullable:
                rules.append((name, "not_nullable", None))
            rules.extend((name, _check_name(check), check) for check in column.checks)
        rules.extend(("*", _check_name(check), check) for check in self.schema.checks)
        return rules

    @staticmethod
    def _verdict(lazy: pl.LazyFrame, frame: pl.DataFrame, key: str,
                 check: pa_pl.Check | None) -> pl.LazyFrame:
        """One boolean column (true: the row passes), as Pandera computes it."""
        if check is None:
            ok = pl.col(key).is_not_null()
            if frame.schema[key].is_float():
                ok = ok & pl.col(key).is_not_nan()
            return lazy.select(ok.alias(CHECK_OUTPUT_KEY))
        out = PolarsCheckBackend(check).apply(PolarsData(lazy, key))
        if isinstance(out, bool):  # one answer for the whole frame
            raise _CannotTell
        result = pl.col(CHECK_OUTPUT_KEY)
        return out.select(result | result.is_null() if check.ignore_na
                          else result.fill_null(False))

    def failure_cases(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """The failure cases Pandera's ``validate(frame, lazy=True)`` would raise (columns
        ``failure_case``, ``column``, ``check``, ``index``); an empty frame when every row
        passes; None when the screen cannot tell (validate with Pandera)."""
        if not self.enabled or not self._fits(frame):
            return None
        rules, lazy, n = self.rules, frame.lazy(), frame.height
        try:
            verdicts = pl.collect_all([self._verdict(lazy, frame, key, check)
                                       for key, _, check in rules])
        except (_CannotTell, pl.exceptions.PolarsError):
            return None
        if any(v.height != n or v.width != 1 for v in verdicts):
            return None  # an aggregate, not one verdict per row
        passed = pl.DataFrame([v.to_series().alias(str(i)) for i, v in enumerate(verdicts)])
        failing = np.flatnonzero(
            passed.select(~pl.all_horizontal(pl.all())).to_series().to_numpy()) \
            if rules else np.empty(0, np.int64)
        if not len(failing):
            return _no_cases()
        rows = frame[failing].with_columns(pl.Series("index", failing, pl.Int32))
        verdict_rows = passed[failing]
        cases = []
        for i, (key, check_name, _) in enumerate(rules):
            bad = rows.filter(~verdict_rows[str(i)])
            if not bad.height:
                continue
            if key == "*":  # a dataframe check names the whole row, as JSON
                value = pl.Series(bad.drop("index").rows(named=True)).struct.json_encode()
                column = self.schema.name
            else:
                value, column = bad[key].cast(pl.String), key
            cases.append(pl.DataFrame({
                "failure_case": value.cast(pl.String).alias("failure_case"),
                "column": pl.Series([column] * bad.height, dtype=pl.String),
                "check": pl.Series([check_name] * bad.height, dtype=pl.String),
                "index": bad["index"]}))
        return pl.concat(cases)


def _check_name(check: pa_pl.Check) -> str:
    """How Pandera's failure cases name a check."""
    return check.error if check.error is not None else (
        check.name if check.name is not None else str(check))


def _no_cases() -> pl.DataFrame:
    return pl.DataFrame(schema={"failure_case": pl.String, "column": pl.String,
                                "check": pl.String, "index": pl.Int32})


class _CannotTell(Exception):
    """A check answered one value for the whole frame."""
