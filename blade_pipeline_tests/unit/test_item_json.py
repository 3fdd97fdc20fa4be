"""The native item JSON kernel writes exactly what DuckDB's to_json writes, and hashes it."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
import struct

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blade_pipeline import item_json
from blade_pipeline.items import ItemBuilder, _ident, item_sql
from blade_pipeline.sources import source_for
from blade_pipeline_tests.unit.test_items_and_validation import RUN


def duckdb_json(batch: pa.RecordBatch, columns: list[str], keep: pa.Array | None) -> list[str]:
    """What DuckDB's to_json(struct_pack(...)) writes for the same rows."""
    con = duckdb.connect()
    struct = ", ".join(f"{_ident(c)} := {_ident(c)}" for c in columns)
    con.register("raw", pa.Table.from_batches([batch]))
    rows = con.sql(f"SELECT CAST(to_json(struct_pack({struct})) AS VARCHAR) FROM raw").fetchall()
    texts = [r[0] for r in rows]
    return texts if keep is None else [t for t, k in zip(texts, keep.to_pylist(), strict=True) if k]


def native(batch: pa.RecordBatch, keep: pa.Array | None = None) -> tuple[list[str], list[str]]:
    encoded = item_json.encode(batch, sorted(batch.schema.names), keep)
    assert encoded is not None, "the kernel declined columns it should write"
    return encoded[0].to_pylist(), encoded[1].to_pylist()


def assert_same_as_duckdb(batch: pa.RecordBatch, keep: pa.Array | None = None) -> None:
    texts, hashes = native(batch, keep)
    assert texts == duckdb_json(batch, sorted(batch.schema.names), keep)
    assert hashes == [hashlib.sha256(t.encode()).hexdigest() for t in texts]


def test_the_kernel_is_built_on_this_machine():
    assert item_json.available(), (
        "blade_pipeline._item_json is not built (needs gcc, the Python headers and OpenSSL's; "
        "`pip install -e .` builds it): items fall back to DuckDB's slower to_json")


DOUBLES = [0.0, -0.0, 1.0, -2.5, 0.1, 1 / 3, 100.0, 12345.678, 1e-4, 1e-5, 1e-6, 1.5e-6,
           9.99e-7, 1e-7, 1e15, 1e16, 1e20, 9.99e20, 1e21, 1.5e20, 2.0**53, 2.0**60,
           123456789012345678.0, 5e-324, 1.7976931348623157e308, 0.30000000000000004,
           float("nan"), float("inf"), float("-inf"), 4.35, 0.07, 1234.5678, 9007199254740991.0]


def test_doubles_floats_and_their_edges():
    floats = [1.5, 0.1, 3.4e38, 1e-45, None]
    batch = pa.record_batch({"d": pa.array([*DOUBLES, None], pa.float64()),
                             "f": pa.array((floats * 7)[:len(DOUBLES) + 1], pa.float32())})
    assert_same_as_duckdb(batch)


def _double_from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.builds(_double_from_bits, st.integers(0, 2**64 - 1)),
    st.builds(round, st.floats(-1e9, 1e9), st.integers(0, 9)),
    st.builds(lambda m, k: m / 10**k, st.integers(-(2**53), 2**53), st.integers(0, 12)),
), min_size=1, max_size=200))
def test_any_double_is_written_as_duckdb_writes_it(values):
    assert_same_as_duckdb(pa.record_batch({"x": pa.array(values, pa.float64())}))


TEXTS = ['a"b\\c/d', "tab\tnl\nret\rbs\bff\f", "\x00\x01\x1b\x1f\x7f", "é€😀\u2028", "", " "]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_rows_of_every_supported_type_with_nulls_and_a_keep_mask(data):
    n = data.draw(st.integers(1, 40))
    def column(strategy):
        return data.draw(st.lists(st.one_of(st.none(), strategy), min_size=n, max_size=n))
    batch = pa.record_batch({
        "s": pa.array(column(st.text() | st.sampled_from(TEXTS)), pa.string()),
        "ls": pa.array(column(st.text(max_size=5)), pa.large_string()),
        "b": pa.array(column(st.booleans()), pa.bool_()),
        "i8": pa.array(column(st.integers(-128, 127)), pa.int8()),
        "i16": pa.array(column(st.integers(-(2**15), 2**15 - 1)), pa.int16()),
        "i32": pa.array(column(st.integers(-(2**31), 2**31 - 1)), pa.int32()),
        "i64": pa.array(column(st.integers(-(2**63), 2**63 - 1)), pa.int64()),
        "d": pa.array(column(st.floats(allow_nan=False)), pa.float64()),
        "day": pa.array(column(st.dates()), pa.date32()),
        "ts": pa.array(column(st.datetimes()), pa.timestamp("us")),
        "ts_ms": pa.array(column(st.datetimes(max_value=dt.datetime(9999, 12, 31))),
                          pa.timestamp("ms")),
        "ts_s": pa.array(column(st.datetimes()), pa.timestamp("s")),
        'key "quoted"': pa.array(column(st.integers(0, 9)), pa.int64()),
    })
    keep = data.draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n).map(pa.array))
    assert_same_as_duckdb(batch, keep)


@given(st.data())
def test_decimals_of_any_precision_and_scale_are_written_as_duckdb_writes_them(data):
    precision = data.draw(st.integers(1, 38))
    top = precision if precision <= 15 else precision - 1  # DECIMAL(p, p) > 15: DuckDB's own
    scale = data.draw(st.integers(0, top))
    bound = 10**precision - 1
    edges = [u for u in (0, 1, -1, bound, -bound, 10**scale, -(10**scale)) if abs(u) <= bound]
    units = data.draw(st.lists(st.none() | st.integers(-bound, bound) | st.sampled_from(edges),
                               min_size=1, max_size=30))
    exact = decimal.Context(prec=60)  # the default 28 digits would round wide values
    values = [None if u is None else decimal.Decimal(u).scaleb(-scale, exact) for u in units]
    batch = pa.record_batch({"amount": pa.array(values, pa.decimal128(precision, scale))})
    assert_same_as_duckdb(batch)


def test_sliced_batches_and_sliced_keep_masks():
    batch = pa.record_batch({"s": [f"row {i}" for i in range(10)],
                             "d": [i / 4 for i in range(10)],
                             "t": pa.array([dt.datetime(2026, 1, 1, 0, 0, i) for i in range(10)])})
    keep = pa.array([i % 3 != 0 for i in range(10)])
    assert_same_as_duckdb(batch.slice(3, 5), keep.slice(2, 5))


@pytest.mark.parametrize("array", [
    pa.array([decimal.Decimal("0.5")], pa.decimal128(20, 20)),  # DuckDB writes ".5000…"
    pa.array([decimal.Decimal("12.50")], pa.decimal256(40, 2)),
    pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("us", tz="UTC")),
    pa.array([[1, 2]], pa.list_(pa.int64())),
    pa.array([-800_000], pa.int32()).cast(pa.date32()),  # a date before year 1
    pa.array([0], pa.timestamp("ns")),
])
def test_columns_or_values_it_does_not_write_go_to_duckdb(array):
    batch = pa.record_batch({"x": array})
    assert item_json.encode(batch, ["x"]) is None


@pytest.mark.parametrize("drop", [[], ["classification"]], ids=["classified", "default-class"])
def test_items_are_the_same_whichever_path_writes_them(monkeypatch, drop):
    rows = pa.record_batch({
        "report_id": ["R-1", "R-2", "R-3"], "tail_number": ["AF-1", None, "AF-3"],
        "report_date": pa.array([dt.date(2026, 1, d) for d in (1, 2, 3)]),
        "status": ["FMC", "PMC", "NMC"], "reason": [None, "x\ny", "é"],
        "classification": ["UNCLASS", None, "CUI"],
        "last_modified": pa.array([dt.datetime(2026, 1, 1, 12, 0, s) for s in (0, 1, 2)],
                                  pa.timestamp("ms")),
        "hours": [1.5, math.pi, None]}).drop_columns(drop)
    keep = pa.array([True, False, True])
    builder = ItemBuilder(source_for("readiness"), RUN)
    native_items = builder.build(rows, keep)  # kernel JSON, other columns in Arrow
    without = ItemBuilder(source_for("readiness"), RUN, use_kernel=False).build(rows, keep)
    assert native_items.equals(without)  # the kernel skipped on purpose: DuckDB's items
    monkeypatch.setattr(item_json, "_item_json", None)
    assert not item_json.available()
    duckdb_items = builder.build(rows, keep)  # everything in DuckDB
    assert native_items.equals(duckdb_items)
    assert native_items.column("item_id").to_pylist() == ["READY-R-1", "READY-R-3"]
    assert native_items.column("classification").to_pylist() == (
        ["UNCLASS", "UNCLASS"] if drop else ["UNCLASS", "CUI"])


def test_item_sql_without_data_leaves_the_json_to_the_kernel():
    sql = item_sql(source_for("readiness"), ["report_id", "last_modified"], with_data=False)
    assert "to_json" not in sql
