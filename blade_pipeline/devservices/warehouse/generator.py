"""Deterministic synthetic BLADE data for the mock warehouse, generated set-based in DuckDB.

``seed`` (re)fills the four tables of DESIGN §3 with ``rows`` rows each; ``apply_changes`` is the
change feed (new rows and modified rows, ``last_modified = now``); ``invalid_rows`` tells which
seeded rows are deliberately invalid and how.

How it is deterministic: row ``i`` of a table is a pure function of ``(i, seed)`` (hash
draws, see ``sqlgen``), of the time window and of the invalid-row plan. The same
``(rows, seed, end, days, invalid_fraction)`` gives the same table contents (with the same
DuckDB version), even in the same physical order (with DuckDB's default
``preserve_insertion_order``). Another ``rows`` keeps every row that is
valid in both runs identical (row ``i`` does not depend on ``rows``); only the choice of
invalid rows depends on ``rows``.

Time window: ``last_modified`` covers the ``days`` days before ``end``, i.e.
``[end - days, end)``: with ``end`` = today nothing lies ahead of the wall clock, so the change
feed (which stamps ``now``) always moves the watermark forward. More activity on weekdays and
in working hours, a slow growth over the window and a Christmas lull.

Invalid rows: exactly ``round(rows * invalid_fraction)`` per table, chosen by a stride
permutation of the row indexes (evenly spread, no two adjacent), split evenly among the table's
kinds (``INVALID_FIELDS``). A ``duplicate_key`` row repeats the key of its (valid) neighbour.
The seeding parameters are kept as JSON in each table's comment, so ``invalid_rows`` and
``apply_changes`` can re-derive the plan without any extra table or column.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from blade_pipeline.devservices.warehouse import vocabulary as voc
from blade_pipeline.devservices.warehouse.sqlgen import (
    hash_expr,
    lit,
    normal,
    pick,
    pick_template,
    stream_offset,
    switch,
    uniform,
    weighted,
    zipf_weights,
)
from blade_pipeline.devservices.warehouse.tables import (
    COLUMNS,
    PRIMARY_KEYS,
    TABLES,
    create_table_sql,
    create_tables,
    fetch_one,
    qualified_name,
    quote_ident,
)

__all__ = [
    "INVALID_FIELDS",
    "INVALID_KINDS",
    "TABLES",
    "apply_changes",
    "create_tables",
    "invalid_rows",
    "seed",
    "seeding_params",
]

INVALID_KINDS: tuple[str, ...] = (
    "bad_enum", "negative_value", "missing_key", "duplicate_key", "wrong_shape",
)

#: data_type -> kind -> the fields an invalid row of that kind breaks (one per row, chosen by
#: hash). Readiness has no numeric column, hence no ``negative_value``.
INVALID_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "maintenance": {
        "bad_enum": ("priority", "status", "maint_type"),
        "negative_value": ("labor_hours",),
        "missing_key": ("record_id", "tail_number"),
        "duplicate_key": ("record_id",),
        "wrong_shape": ("tail_number", "due_date"),
    },
    "sortie": {
        "bad_enum": ("mission_type", "status"),
        "negative_value": ("flight_hours",),
        "missing_key": ("sortie_id", "tail_number"),
        "duplicate_key": ("sortie_id",),
        "wrong_shape": ("tail_number", "landing_time"),
    },
    "supply": {
        "bad_enum": ("condition_code",),
        "negative_value": ("quantity_on_hand", "reorder_point"),
        "missing_key": ("part_number", "nomenclature"),
        "duplicate_key": ("part_number",),
        "wrong_shape": ("part_number", "unit_cost"),
    },
    "readiness": {
        "bad_enum": ("status",),
        "missing_key": ("report_id", "tail_number"),
        "duplicate_key": ("report_id",),
        "wrong_shape": ("tail_number", "report_date"),
    },
}

#: Part numbers are unique for row indexes below this (the NIIN has 7 digits).
MAX_ROWS = 10_000_000
MAX_INVALID_FRACTION = 0.25
_FLEET_SEED = 1_000_003  # the fleet (tails, types, bases) is the same for every seed
_KEY_SEED = 7_000_001  # so is the part number of row i
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH = dt.datetime(1970, 1, 1)
_DAY_BUCKETS = 1 << 17
_INDEX_TABLE = "__blade_generator_index"
_COMMENT_PREFIX = "Synthetic BLADE data (blade_pipeline mock warehouse generator) "


# --- invalid-row plan ------------------------------------------------------------------------
@dataclass(frozen=True)
class _InvalidPlan:
    """Row ``i < rows`` is invalid iff ``perm(i) < count``; its kind is ``perm(i) % n_kinds``.

    ``perm(i) = (i * stride + offset) % rows`` is a bijection (``gcd(stride, rows) = 1``), and
    ``count <= stride <= rows - count`` guarantees that the neighbours of an invalid row are valid.
    """

    rows: int = 0
    count: int = 0
    stride: int = 1
    offset: int = 0

    @classmethod
    def make(cls, rows: int, seed: int, fraction: float) -> _InvalidPlan:
        count = round(rows * fraction)
        while count > 0:
            stride = _stride(rows, count, seed)
            if stride:
                return cls(rows, count, stride, (seed * 2_654_435_761) % rows)
            count -= 1
        return cls(rows)

    def perm(self, idx: str) -> str:
        return f"((({idx}) * {self.stride} + {self.offset}) % {self.rows})"

    def kind_index(self, idx: str, n_kinds: int) -> str:
        """SQL: kind index of row ``idx`` (-1 = valid)."""
        if not self.count:
            return "-1"
        perm = self.perm(idx)
        return (f"(CASE WHEN ({idx}) < {self.rows} AND {perm} < {self.count} "
                f"THEN {perm} % {n_kinds} ELSE -1 END)")


def _stride(rows: int, count: int, seed: int) -> int | None:
    """A stride coprime to ``rows`` in ``[count, rows - count]``, near the golden section."""
    lo, hi = count, rows - count
    if lo > hi:
        return None
    start = min(max(int(rows * 0.3819660112501051) + seed % 97, lo), hi)
    for cand in itertools.chain(range(start, hi + 1), range(start - 1, lo - 1, -1)):
        if cand > 0 and math.gcd(cand, rows) == 1:
            return cand
    return None


# --- one batch of rows -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Batch:
    """Rows ``start .. start+count-1`` of one table, and how to time them."""

    data_type: str
    seed: int
    start: int
    count: int
    plan: _InvalidPlan
    first_day: dt.date | None  # window start (seeding) ...
    n_days: int
    fixed_us: int | None  # ... or one last_modified for all rows (change feed), epoch µs
    ref_us: int  # the data's "now" (end of window / change time), epoch µs
    index_table: str | None = None  # a table of 0..count-1 (parallel scan) instead of range()

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(INVALID_FIELDS[self.data_type])

    def bad(self, kind: str, field: str | None = None) -> str:
        """SQL predicate: this row is invalid of ``kind`` (breaking ``field``)."""
        if kind not in self.kinds or not self.plan.count:
            return "FALSE"
        k = self.kinds.index(kind)
        if field is None:
            return f"(ik = {k})"
        fields = INVALID_FIELDS[self.data_type][kind]
        return f"(ik = {k} AND iv % {len(fields)} = {fields.index(field)})"


def _u(b: _Batch, tag: str, idx: str = "i") -> str:
    """A uniform draw for row ``idx`` of this table (tables draw independently)."""
    return uniform(idx, b.seed, f"{b.data_type}.{tag}")


def _seq_key(idx: str) -> str:
    return f"lpad(CAST(({idx}) + 1 AS VARCHAR), 9, '0')"


def _nsn(idx: str, u_fsc: str | None = None, u_ncb: str | None = None) -> str:
    """NSN 'ffff-cc-nnn-nnnn' of row ``idx``: supply class, country code, unique NIIN."""
    u_fsc = u_fsc or uniform(idx, _KEY_SEED, "fsc")
    u_ncb = u_ncb or uniform(idx, _KEY_SEED, "ncb")
    fsc = weighted(u_fsc, {c.fsc: c.weight for c in voc.SUPPLY_CLASSES})
    ncb = weighted(u_ncb, voc.NSN_COUNTRY)
    niin = f"((({idx}) * 6364137 + 1442695) % 10000000)"
    return (f"({fsc} || '-' || {ncb} || '-' || lpad(CAST({niin} // 10000 AS VARCHAR), 3, '0')"
            f" || '-' || lpad(CAST({niin} % 10000 AS VARCHAR), 4, '0'))")


def _key(data_type: str, idx: str) -> str:
    """The clean primary key of row ``idx``."""
    return _nsn(idx) if data_type == "supply" else _seq_key(idx)


def _stored_key(b: _Batch) -> str:
    """The primary key as stored: NULL, a neighbour's key, or malformed for invalid rows."""
    pk = PRIMARY_KEYS[b.data_type]
    own = _nsn("i", "ku_fsc", "ku_ncb") if b.data_type == "supply" else _seq_key("i")
    src = "(CASE WHEN i = 0 THEN 1 ELSE i - 1 END)"
    malformed = ""
    if b.data_type == "supply":
        malformed = f"WHEN {b.bad('wrong_shape', 'part_number')} THEN replace({own}, '-', '') "
    return (f"(CASE WHEN {b.bad('missing_key', pk)} THEN NULL "
            f"WHEN {b.bad('duplicate_key')} THEN {_key(b.data_type, src)} "
            f"{malformed}ELSE {own} END)")


def _days_cte(b: _Batch) -> str:
    """``day_of``: day of the window for each of _DAY_BUCKETS equal slices of [0, 1).

    A day's share of slices follows its activity weight (weekday, growth, Christmas lull,
    day-to-day jitter), so drawing a slice uniformly draws a day by activity.
    """
    weekday = switch("isodow(dday)", {
        k + 1: repr(w) for k, w in enumerate(voc.WEEKDAY_WEIGHTS[b.data_type])})
    lull = ("(CASE WHEN (month(dday) = 12 AND dayofmonth(dday) >= 22) OR "
            "(month(dday) = 1 AND dayofmonth(dday) <= 2) THEN 0.5 ELSE 1.0 END)")
    growth = f"(0.85 + 0.3 * d / {b.n_days})"
    jitter = f"(0.85 + 0.3 * {_u(b, 'day_jitter', 'd')})"
    return f"""days AS (
  SELECT dday, (sum(w) OVER (ORDER BY d ROWS UNBOUNDED PRECEDING) - w)::DOUBLE
               / sum(w) OVER () AS lo
  FROM (SELECT d, dday, round({weekday} * {growth} * {lull} * {jitter} * 1e6)::BIGINT AS w
        FROM (SELECT d, {lit(b.first_day)} + d::INTEGER AS dday FROM range({b.n_days}) r(d)))),
day_of AS (
  SELECT bucket, dday FROM range({_DAY_BUCKETS}) r(bucket)
  ASOF JOIN days ON (bucket + 0.5) / {_DAY_BUCKETS} >= days.lo)"""


def _fleet_cte() -> str:
    """The fleet: unique USAF tail numbers 'yy-nnnn' with aircraft type and home base."""
    u_type, u_year, u_base = (uniform("f", _FLEET_SEED, t) for t in ("type", "year", "base"))
    types = {t.name: t.fleet_weight for t in voc.AIRCRAFT_TYPES}
    year = switch("aircraft_type", {
        t.name: f"{t.years[0]} + floor(u_year * {t.years[1] - t.years[0] + 1})::INTEGER"
        for t in voc.AIRCRAFT_TYPES})
    base = switch("aircraft_type", {
        t.name: weighted("u_base", zipf_weights(t.bases)) for t in voc.AIRCRAFT_TYPES})
    return f"""fleet AS (
  SELECT f, aircraft_type,
         lpad(CAST({year} % 100 AS VARCHAR), 2, '0') || '-'
           || lpad(CAST((f * 3137 + 211) % 10000 AS VARCHAR), 4, '0') AS tail_number,
         {base} AS base
  FROM (SELECT f, {weighted('u_type', types)} AS aircraft_type, u_year, u_base
        FROM (SELECT f, {u_type} AS u_type, {u_year} AS u_year, {u_base} AS u_base
              FROM range({voc.FLEET_SIZE}) r(f))))"""


def _frame(b: _Batch, tags: list[str], fleet_exponent: float | None) -> tuple[str, str]:
    """Common CTEs: row index + invalid kind + uniforms (g), last_modified and aircraft (t).

    Days and aircraft are looked up in constant lists (one-row CTE ``lk``), not joined: a hash
    join may build on the row side and scramble the row order, a cross join with one row keeps
    it. Returns (WITH-clause body, name of the last CTE).
    """
    tags = [*tags, "fleet"] if fleet_exponent is not None else list(tags)
    if b.fixed_us is None:
        tags += ["day", "hour", "sec"]
    cols = [f"{_u(b, tag)} AS u_{tag}" for tag in tags]
    if b.data_type == "supply":
        cols += [f"{uniform('i', _KEY_SEED, 'fsc')} AS ku_fsc",
                 f"{uniform('i', _KEY_SEED, 'ncb')} AS ku_ncb"]
    ik = b.plan.kind_index("i", len(b.kinds))
    source = f"range({b.start}, {b.start + b.count}) r(i)"
    if b.index_table:  # DuckDB scans range() on one thread, a table on all
        assert b.start == 0, "the index table holds 0..count-1"
        source = b.index_table
    ctes, lists, derived = [], [], []
    if b.fixed_us is None:
        ctes.append(_days_cte(b))
        lists.append("(SELECT list(dday ORDER BY bucket) FROM day_of) AS day_list")
        hours = {h: w for h, w in enumerate(voc.HOUR_WEIGHTS[b.data_type])}
        day = f"day_list[1 + floor(u_day * {_DAY_BUCKETS})::BIGINT]"
        derived.append(f"epoch_us({day}::TIMESTAMP) + {weighted('u_hour', hours)}::BIGINT * "
                       f"{_US_PER_HOUR} + floor(u_sec * {_US_PER_HOUR})::BIGINT AS lm_us")
    else:
        derived.append(f"{b.fixed_us}::BIGINT AS lm_us")
    if fleet_exponent is not None:
        ctes.append(_fleet_cte())
        lists.append("(SELECT list({'aircraft_type': aircraft_type, 'tail': tail_number, "
                     "'base': base} ORDER BY f) FROM fleet) AS fleet_list")
        plane = (f"fleet_list[1 + floor({voc.FLEET_SIZE} * pow(u_fleet, {fleet_exponent}))"
                 "::BIGINT]")
        derived += [f"{plane}.{field} AS {field}" for field in ("aircraft_type", "tail", "base")]
    if lists:
        ctes.append(f"lk AS (SELECT {', '.join(lists)})")
    ctes.append(f"""g AS (
  SELECT i, {ik} AS ik, {hash_expr('i', b.seed, 'invalid_variant')} AS iv, {', '.join(cols)}
  FROM {source})""")
    cross = " CROSS JOIN lk" if lists else ""
    ctes.append(f"t AS (SELECT g.*, {', '.join(derived)} FROM g{cross})")
    return ",\n".join(ctes), "t"


def _bad_tail(b: _Batch, field_ok: str = "tail") -> str:
    """tail_number as stored: NULL / malformed for the invalid rows that break it."""
    malformed = (f"(CASE (iv >> 20) % 3 WHEN 0 THEN 'XX' WHEN 1 THEN replace({field_ok}, '-', '')"
                 f" ELSE {field_ok} || 'A' END)")
    return (f"(CASE WHEN {b.bad('missing_key', 'tail_number')} THEN NULL "
            f"WHEN {b.bad('wrong_shape', 'tail_number')} THEN {malformed} ELSE {field_ok} END)")


def _ts(us: str) -> str:
    return f"make_timestamp(({us})::BIGINT)"


def _final(b: _Batch, source: str, exprs: Mapping[str, str]) -> str:
    cols = COLUMNS[b.data_type]
    assert set(exprs) == {name for name, _ in cols}, b.data_type
    select = ",\n  ".join(f"CAST({exprs[name]} AS {typ}) AS {quote_ident(name)}"
                          for name, typ in cols)
    return f"SELECT\n  {select}\nFROM {source}"


#: placeholders of the description / reason templates (need columns u_comp .. u_tcto)
_TEXT_PARTS = {
    "component": pick("u_comp", voc.COMPONENTS),
    "system": pick("u_sys", voc.SYSTEMS),
    "fault": pick("u_fault", voc.FAULTS),
    "action": pick("u_act", voc.ACTIONS),
    "phase_hours": pick("u_phase", (100, 200, 300, 400, 600)),
    "tcto_number": "'1' || aircraft_type || '-' || (1000 + floor(u_tcto * 9000)::INTEGER)",
}
_TEXT_TAGS = ["comp", "sys", "fault", "act", "phase", "tcto"]
_TEXT_COLUMNS = {name: f"p_{name}" for name in _TEXT_PARTS}


def _text_cte(name: str, src: str) -> str:
    """CTE adding the template parts as columns (computed once, not per template)."""
    parts = ", ".join(f"{expr} AS {_TEXT_COLUMNS[k]}" for k, expr in _TEXT_PARTS.items())
    return f"{name} AS (SELECT {src}.*, {parts} FROM {src})"


def _maintenance_sql(b: _Batch) -> str:
    tags = ["mt", "st", "pr", "desc", "due", "lab1", "lab2", "part", "cls", *_TEXT_TAGS]
    ctes, src = _frame(b, tags, fleet_exponent=2.0)
    descriptions = {mt: pick_template("u_desc", texts, _TEXT_COLUMNS)
                    for mt, texts in voc.MAINT_DESCRIPTIONS.items()}
    median = switch("maint_type", {k: repr(math.log(v))
                                   for k, v in voc.MAINT_LABOR_MEDIAN.items()})
    status = (f"CASE WHEN ({b.ref_us} - lm_us) // {_US_PER_DAY} < {voc.RECENT_DAYS} "
              f"THEN {weighted('u_st', voc.MAINT_STATUS_RECENT)} "
              f"ELSE {weighted('u_st', voc.MAINT_STATUS_OLD)} END")
    due_offset = ("CASE status WHEN 'DEFERRED' THEN 30 + floor(u_due * 150) "
                  "WHEN 'COMPLETED' THEN floor(u_due * 30) - 10 "
                  "WHEN 'CANCELLED' THEN floor(u_due * 30) - 10 "
                  "ELSE 3 + floor(u_due * 60) END")
    labor = ("round(CASE status WHEN 'OPEN' THEN 0 WHEN 'CANCELLED' THEN 0 "
             "WHEN 'IN_PROGRESS' THEN labor * u_part ELSE labor END, 1)")
    return f"""WITH {ctes},
{_text_cte('x', src)},
m AS (SELECT x.*, {weighted('u_mt', voc.MAINT_TYPES)} AS maint_type FROM x),
m2 AS (SELECT m.*, {status} AS status,
              exp({median} + 0.8 * {normal('u_lab1', 'u_lab2')}) AS labor FROM m)
{_final(b, 'm2', {
    "record_id": _stored_key(b),
    "tail_number": _bad_tail(b),
    "aircraft_type": "aircraft_type",
    "maint_type": f"CASE WHEN {b.bad('bad_enum', 'maint_type')} THEN 'ROUTINE' "
                  "ELSE maint_type END",
    "description": switch("maint_type", descriptions),
    "due_date": f"CASE WHEN {b.bad('wrong_shape', 'due_date')} THEN DATE '1900-01-01' "
                f"ELSE CAST({_ts('lm_us')} AS DATE) + ({due_offset})::INTEGER END",
    "priority": f"CASE WHEN {b.bad('bad_enum', 'priority')} THEN 'URGENT' "
                f"WHEN maint_type = 'UNSCHEDULED' THEN "
                f"{weighted('u_pr', voc.PRIORITY_UNSCHEDULED)} "
                f"ELSE {weighted('u_pr', voc.PRIORITY_OTHER)} END",
    "status": f"CASE WHEN {b.bad('bad_enum', 'status')} THEN 'BROKEN' ELSE status END",
    "labor_hours": f"CASE WHEN {b.bad('negative_value')} THEN -round(0.5 + labor, 1) "
                   f"ELSE {labor} END",
    "base": "base",
    "classification": weighted("u_cls", voc.CLASSIFICATION),
    "last_modified": _ts("lm_us"),
})}"""


def _sortie_sql(b: _Batch) -> str:
    tags = ["mis", "st", "dur1", "dur2", "delay", "lead", "cls"]
    ctes, src = _frame(b, tags, fleet_exponent=2.0)
    missions = switch("aircraft_type", {
        t.name: weighted("u_mis", t.missions) for t in voc.AIRCRAFT_TYPES})
    tenths = switch("aircraft_type", {
        t.name: (f"greatest(1, round(10 * ({t.sortie_hours[0]} + "
                 f"{t.sortie_hours[1] - t.sortie_hours[0]} * (u_dur1 + u_dur2) / 2)))")
        for t in voc.AIRCRAFT_TYPES})
    flown = "status IN ('COMPLETED', 'ABORTED')"
    minute = 60_000_000
    landed = f"((lm_us - (10 + floor(u_delay * 350))::BIGINT * {minute}) // {minute}) * {minute}"
    planned = (f"((lm_us + (6 + floor(u_lead * 330))::BIGINT * {_US_PER_HOUR}) "
               f"// {5 * minute}) * {5 * minute}")
    return f"""WITH {ctes},
s AS (SELECT {src}.*, {weighted('u_st', voc.SORTIE_STATUS)} AS status FROM {src}),
s2 AS (SELECT s.*, CASE WHEN status = 'ABORTED' THEN 1 + floor(u_dur1 * 8)
                   ELSE {tenths} END::BIGINT AS tenths FROM s),
s3 AS (SELECT s2.*, CASE WHEN {flown} THEN {landed} - tenths * 360000000
                    ELSE {planned} END AS takeoff_us FROM s2)
{_final(b, 's3', {
    "sortie_id": _stored_key(b),
    "tail_number": _bad_tail(b),
    "aircraft_type": "aircraft_type",
    "mission_type": f"CASE WHEN {b.bad('bad_enum', 'mission_type')} THEN 'UNKNOWN' "
                    f"ELSE {missions} END",
    "takeoff_time": _ts("takeoff_us"),
    "landing_time": _ts(f"CASE WHEN {b.bad('wrong_shape', 'landing_time')} "
                        "THEN takeoff_us - tenths * 360000000 "
                        "ELSE takeoff_us + tenths * 360000000 END"),
    "flight_hours": f"CASE WHEN {b.bad('negative_value')} THEN -tenths / 10.0 "
                    "ELSE tenths / 10.0 END",
    "base": "base",
    "status": f"CASE WHEN {b.bad('bad_enum', 'status')} THEN 'DELAYED' ELSE status END",
    "classification": weighted("u_cls", voc.CLASSIFICATION),
    "last_modified": _ts("lm_us"),
})}"""


def _supply_sql(b: _Batch) -> str:
    tags = ["nom", "c1", "c2", "q1", "q2", "zero", "ro", "site", "bldg", "bin1", "bin2", "bin3",
            "cond", "cls", "bad"]
    ctes, src = _frame(b, tags, fleet_exponent=None)
    fsc = weighted("ku_fsc", {c.fsc: c.weight for c in voc.SUPPLY_CLASSES})
    by_fsc = {
        "nomenclature": {c.fsc: pick("u_nom", c.items) for c in voc.SUPPLY_CLASSES},
        "log_cost": {c.fsc: repr(math.log(c.median_cost)) for c in voc.SUPPLY_CLASSES},
        "stock": {c.fsc: repr(c.median_stock) for c in voc.SUPPLY_CLASSES},
    }
    bases = sorted({base for t in voc.AIRCRAFT_TYPES for base in t.bases})
    sites = zipf_weights(voc.SUPPLY_DEPOTS, 1.0) | {base: 0.08 for base in bases}
    location = (f"{weighted('u_site', sites)} || ', Bldg ' || (100 + floor(u_bldg * 900))::INTEGER"
                " || ', Bin ' || chr(65 + floor(u_bin1 * 12)::INTEGER) || '-'"
                " || lpad(CAST(1 + floor(u_bin2 * 40)::INTEGER AS VARCHAR), 2, '0') || '-'"
                " || lpad(CAST(1 + floor(u_bin3 * 6)::INTEGER AS VARCHAR), 2, '0')")
    qty = (f"CASE WHEN u_zero < 0.07 THEN 0 "
           f"ELSE floor(stock * exp({normal('u_q1', 'u_q2')}))::BIGINT END")
    negative = "-(1 + floor(u_bad * 50))::BIGINT"
    cost = f"greatest(0.01, round(exp(log_cost + 0.9 * {normal('u_c1', 'u_c2')}), 2))"
    return f"""WITH {ctes},
p AS (SELECT {src}.*, {fsc} AS fsc FROM {src}),
p2 AS (SELECT p.*, {switch('fsc', by_fsc['nomenclature'])} AS nomenclature,
              {switch('fsc', by_fsc['log_cost'])} AS log_cost,
              {switch('fsc', by_fsc['stock'])} AS stock FROM p)
{_final(b, 'p2', {
    "part_number": _stored_key(b),
    "nomenclature": f"CASE WHEN {b.bad('missing_key', 'nomenclature')} THEN NULL "
                    "ELSE nomenclature END",
    "quantity_on_hand": f"CASE WHEN {b.bad('negative_value', 'quantity_on_hand')} "
                        f"THEN {negative} ELSE {qty} END",
    "reorder_point": f"CASE WHEN {b.bad('negative_value', 'reorder_point')} THEN {negative} "
                     "ELSE round(stock * (0.15 + 0.35 * u_ro)) END",
    "unit_cost": f"CASE WHEN {b.bad('wrong_shape', 'unit_cost')} THEN 0 ELSE {cost} END",
    "location": location,
    "condition_code": f"CASE WHEN {b.bad('bad_enum')} THEN {pick('u_bad', ('Z', 'Q', 'X'))} "
                      f"ELSE {weighted('u_cond', voc.CONDITION_CODES)} END",
    "classification": weighted("u_cls", voc.CLASSIFICATION),
    "last_modified": _ts("lm_us"),
})}"""


def _reason(status: str, u_text: str, parts: Mapping[str, str]) -> str:
    """Readiness reason text for a PMC/NMC status (NULL for FMC)."""
    return switch(status, {
        s: pick_template(u_text, texts, parts)
        for s, texts in voc.READINESS_REASONS.items()})


def _readiness_sql(b: _Batch) -> str:
    tags = ["st", "reason", "cls", *_TEXT_TAGS]
    ctes, src = _frame(b, tags, fleet_exponent=1.0)
    fmc = switch("aircraft_type", {t.name: repr(t.fmc_rate) for t in voc.AIRCRAFT_TYPES})
    status = ("CASE WHEN u_st < fmc THEN 'FMC' "
              "WHEN u_st < fmc + (1 - fmc) * 0.35 THEN 'PMC' ELSE 'NMC' END")
    report_date = f"CAST({_ts(f'lm_us - 8 * {_US_PER_HOUR}')} AS DATE)"
    return f"""WITH {ctes},
{_text_cte('x', src)},
r0 AS (SELECT x.*, {fmc} AS fmc FROM x),
r AS (SELECT r0.*, {status} AS status FROM r0)
{_final(b, 'r', {
    "report_id": _stored_key(b),
    "tail_number": _bad_tail(b),
    "aircraft_type": "aircraft_type",
    "report_date": f"CASE WHEN {b.bad('wrong_shape', 'report_date')} "
                   f"THEN {report_date} + 400 ELSE {report_date} END",
    "status": f"CASE WHEN {b.bad('bad_enum')} THEN {pick('u_reason', ('MC', 'UNK'))} "
              "ELSE status END",
    "reason": _reason("status", "u_reason", _TEXT_COLUMNS),
    "base": "base",
    "classification": weighted("u_cls", voc.CLASSIFICATION),
    "last_modified": _ts("lm_us"),
})}"""


_BUILDERS = {
    "maintenance": _maintenance_sql,
    "sortie": _sortie_sql,
    "supply": _supply_sql,
    "readiness": _readiness_sql,
}


# --- public API ------------------------------------------------------------------------------
def _check_seed(value: int) -> int:
    if not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise ValueError(f"seed must be a 64-bit integer, got {value!r}")
    return value


def _epoch_us(value: dt.datetime) -> int:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def seed(
    con: duckdb.DuckDBPyConnection,
    rows: int,
    seed: int = 42,
    *,
    end: dt.date | None = None,
    days: int = 730,
    invalid_fraction: float = 0.01,
    schema: str = "blade",
) -> dict[str, int]:
    """(Re)create and fill the four tables with ``rows`` rows each, in one transaction.

    ``last_modified`` lies in ``[end - days, end)``; ``end`` defaults to today (UTC).
    Returns rows per table (by data_type).
    """
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be within 0..{MAX_ROWS}, got {rows}")
    if not 0 <= invalid_fraction <= MAX_INVALID_FRACTION:
        raise ValueError(f"invalid_fraction must be within 0..{MAX_INVALID_FRACTION}")
    if days < 1:
        raise ValueError("days must be >= 1")
    _check_seed(seed)
    end = end or dt.datetime.now(dt.UTC).date()
    first_day = end - dt.timedelta(days=days)
    ref_us = _epoch_us(dt.datetime.combine(end, dt.time()))
    params = {"rows": rows, "seed": seed, "end": end.isoformat(), "days": days,
              "invalid_fraction": invalid_fraction}
    comment = lit(_COMMENT_PREFIX + json.dumps(params, sort_keys=True))
    (database,) = fetch_one(con, "SELECT current_database()")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}.{quote_ident(schema)}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_INDEX_TABLE} AS "
                    f"SELECT range AS i FROM range({rows})")
        counts = {}
        plan = _InvalidPlan.make(rows, seed, invalid_fraction)
        for data_type in TABLES:
            table = qualified_name(con, data_type, schema)
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(create_table_sql(table, data_type))
            batch = _Batch(data_type, seed, 0, rows, plan, first_day, days, None, ref_us,
                           f"temp.main.{_INDEX_TABLE}")
            (counts[data_type],) = fetch_one(
                con, f"INSERT INTO {table} {_BUILDERS[data_type](batch)}")
            con.execute(f"COMMENT ON TABLE {table} IS {comment}")
        con.execute(f"DROP TABLE temp.main.{_INDEX_TABLE}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts


def seeding_params(
    con: duckdb.DuckDBPyConnection, data_type: str, schema: str = "blade"
) -> dict | None:
    """The parameters ``seed`` filled this table with (from its comment), or None."""
    (database,) = fetch_one(con, "SELECT current_database()")
    row = fetch_one(
        con, "SELECT comment FROM duckdb_tables() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [database, schema, TABLES[data_type]])
    if not row or not row[0] or not row[0].startswith(_COMMENT_PREFIX):
        return None
    return json.loads(row[0][len(_COMMENT_PREFIX):])


def _plan_of(params: dict | None) -> _InvalidPlan:
    if params is None:
        return _InvalidPlan()
    return _InvalidPlan.make(params["rows"], params["seed"], params["invalid_fraction"])


def invalid_rows(
    con: duckdb.DuckDBPyConnection, data_type: str, schema: str = "blade"
) -> pa.Table:
    """The deliberately invalid seeded rows of a table: row_index, key (as stored), kind, field.

    Re-derived from the seeding parameters in the table comment (empty if not seeded here).
    Change-feed rows are always valid, and the change feed never modifies an invalid row.
    """
    params = seeding_params(con, data_type, schema)
    plan = _plan_of(params)
    seed_value = params["seed"] if params else 0
    b = _Batch(data_type, seed_value, 0, plan.rows, plan, None, 0, 0, 0)
    fields = INVALID_FIELDS[data_type]
    field = switch("ik", {k: switch(f"iv % {len(f)}", {j: lit(x) for j, x in enumerate(f)})
                          for k, f in enumerate(fields.values())})
    ku = ""
    if data_type == "supply":
        ku = (f", {uniform('i', _KEY_SEED, 'fsc')} AS ku_fsc, "
              f"{uniform('i', _KEY_SEED, 'ncb')} AS ku_ncb")
    sql = f"""
      SELECT i AS row_index, {_stored_key(b)} AS key,
             ({lit(list(fields))})[ik + 1] AS kind, {field} AS field
      FROM (SELECT i, {plan.kind_index('i', len(fields))} AS ik,
                   {hash_expr('i', seed_value, 'invalid_variant')} AS iv{ku}
            FROM range({plan.rows}) r(i))
      WHERE ik >= 0 ORDER BY i"""
    return con.sql(sql).to_arrow_table()


def _valid_target(plan: _InvalidPlan, n_kinds: int, dup: int) -> str:
    """SQL predicate on ``t``: a valid row whose key no invalid row repeats."""
    if not plan.count:
        return "TRUE"
    kind = plan.kind_index
    return (f"({kind('t', n_kinds)} = -1 AND {kind('t + 1', n_kinds)} <> {dup} "
            f"AND NOT (t = 1 AND {kind('0', n_kinds)} = {dup}))")


def _changed_values(data_type: str) -> dict[str, str]:
    """New values of modified rows (SQL over the old row ``x`` and uniforms ``u1..u3``)."""
    if data_type == "maintenance":
        return {
            "status": "CASE x.status WHEN 'OPEN' THEN 'IN_PROGRESS' WHEN 'IN_PROGRESS' "
                      "THEN 'COMPLETED' WHEN 'DEFERRED' THEN 'OPEN' WHEN 'CANCELLED' THEN 'OPEN' "
                      "ELSE x.status END",
            "labor_hours": "round(x.labor_hours + CASE x.status WHEN 'OPEN' THEN 0.5 + 2.5 * u1 "
                           "WHEN 'IN_PROGRESS' THEN 1 + 7 * u1 WHEN 'COMPLETED' "
                           "THEN 0.5 + 3.5 * u1 ELSE 0 END, 1)",
        }
    if data_type == "sortie":
        flown = "x.status IN ('COMPLETED', 'ABORTED')"
        extra = "(1 + floor(u2 * 5))::BIGINT"
        return {
            "status": "CASE x.status WHEN 'SCHEDULED' THEN "
                      + weighted("u1", {"COMPLETED": 85, "CANCELLED": 10, "ABORTED": 5})
                      + " WHEN 'CANCELLED' THEN 'SCHEDULED' ELSE x.status END",
            "landing_time": f"CASE WHEN {flown} THEN x.landing_time + to_minutes(6 * {extra}) "
                            "ELSE x.landing_time END",
            "flight_hours": f"CASE WHEN {flown} THEN (round(x.flight_hours * 10) + {extra}) / 10.0"
                            " ELSE x.flight_hours END",
        }
    if data_type == "supply":
        issue, receipt = "(1 + floor(u2 * 20))::INTEGER", "(1 + floor(u3 * 50))::INTEGER"
        return {"quantity_on_hand": f"CASE WHEN x.quantity_on_hand < {issue} OR u1 < 0.4 "
                                    f"THEN x.quantity_on_hand + {receipt} "
                                    f"ELSE x.quantity_on_hand - {issue} END"}
    new_status = ("CASE x.status WHEN 'FMC' THEN (CASE WHEN u1 < 0.6 THEN 'NMC' ELSE 'PMC' END) "
                  "WHEN 'PMC' THEN (CASE WHEN u1 < 0.7 THEN 'FMC' ELSE 'NMC' END) "
                  "ELSE (CASE WHEN u1 < 0.8 THEN 'FMC' ELSE 'PMC' END) END")
    return {"status": new_status, "reason": _reason(new_status, "u2", _TEXT_PARTS)}


def apply_changes(
    con: duckdb.DuckDBPyConnection,
    *,
    inserts: int,
    updates: int,
    now: dt.datetime,
    seed: int,
    schema: str = "blade",
) -> dict[str, tuple[int, int]]:
    """Change feed: per table insert ``inserts`` new rows and modify ``updates`` existing ones.

    New rows continue the row index after the current row count (record/sortie/report ids after
    the current maximum; new, unique NSNs) and are valid. Modified rows are picked among the
    valid rows (never one whose key is duplicated) and get a changed business field
    (maintenance status/labor_hours, sortie status/landing_time/flight_hours, supply
    quantity_on_hand, readiness status/reason). All touched rows get ``last_modified = now``
    (naive = UTC). Returns per data_type (inserted, updated).
    """
    if inserts < 0 or updates < 0:
        raise ValueError("inserts and updates must be >= 0")
    _check_seed(seed)
    now_us = _epoch_us(now)
    now_lit = _ts(str(now_us))
    create_tables(con, schema)
    result = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for data_type in TABLES:
            table = qualified_name(con, data_type, schema)
            pk = quote_ident(PRIMARY_KEYS[data_type])
            plan = _plan_of(seeding_params(con, data_type, schema))
            count, top = fetch_one(con, f"SELECT count(*), max({pk}) FROM {table}")
            next_index = count  # row i has id i + 1; also past a larger id stored by others
            if data_type != "supply" and top and top.isdigit():
                next_index = max(count, int(top))
            updated = 0
            if updates and count:
                updated = _update(con, table, data_type, plan, count, updates, seed, now_lit)
            inserted = 0
            if inserts:
                batch = _Batch(data_type, seed, next_index, inserts, _InvalidPlan(), None, 0,
                               now_us, now_us)
                (inserted,) = fetch_one(
                    con, f"INSERT INTO {table} {_BUILDERS[data_type](batch)}")
            result[data_type] = (inserted, updated)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


def _update(con: duckdb.DuckDBPyConnection, table: str, data_type: str, plan: _InvalidPlan,
            count: int, updates: int, seed: int, now_lit: str) -> int:
    """Modify up to ``updates`` valid rows, picked by a seed-dependent permutation of the row
    indexes (4 * updates + 64 candidates: at least 69 % of the rows are valid)."""
    kinds = tuple(INVALID_FIELDS[data_type])
    mix = stream_offset(seed, f"{data_type}.targets")
    stride, offset = _stride(count, 0, mix) or 1, mix % count
    pk = quote_ident(PRIMARY_KEYS[data_type])
    values = _changed_values(data_type)
    tags = {f"u{n}": f"change_{n}" for n in (1, 2, 3)} | {f"u_{t}": t for t in _TEXT_TAGS}
    tags = {col: f"{data_type}.{tag}" for col, tag in tags.items()}
    uniforms = ", ".join(f"{uniform('t', seed, tag)} AS {col}" for col, tag in tags.items())
    new_cols = ", ".join(f"{expr} AS {quote_ident(col)}" for col, expr in values.items())
    sets = ", ".join(f"{quote_ident(col)} = c.{quote_ident(col)}" for col in values)
    (updated,) = fetch_one(con, f"""
      UPDATE {table} SET {sets}, last_modified = {now_lit}
      FROM (SELECT x.{pk} AS k, {new_cols}
            FROM (SELECT t, {_key(data_type, 't')} AS k, {uniforms}
                  FROM (SELECT t FROM (SELECT k, (k * {stride} + {offset}) % {count} AS t
                                       FROM range({min(count, 4 * updates + 64)}) r(k))
                        WHERE {_valid_target(plan, len(kinds), kinds.index('duplicate_key'))}
                        ORDER BY k LIMIT {updates})) tg
            JOIN {table} x ON x.{pk} = tg.k) c
      WHERE {table}.{pk} = c.k""")
    return updated
