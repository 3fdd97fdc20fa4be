"""Schema changes classified (issue 20): added, dropped, retyped (widening or narrowing),
nullability; versions recorded in a lake only when the columns change."""

import pyarrow as pa
import pytest

from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.schema_versions import (
    Change,
    SchemaHistory,
    databricks_type,
    diff,
    is_widening,
    observe,
)

BASE = pa.schema([("id", pa.string(), False), ("qty", pa.int32()),
                  ("cost", pa.decimal128(12, 2)), ("day", pa.date32()),
                  ("at", pa.timestamp("us"))])


@pytest.mark.parametrize(("arrow", "name"), [
    (pa.int32(), "int"), (pa.decimal128(12, 2), "decimal(12,2)"),
    (pa.timestamp("us"), "timestamp_ntz"), (pa.timestamp("us", tz="Etc/UTC"), "timestamp"),
    (pa.list_(pa.string()), "array<string>"), (pa.map_(pa.string(), pa.int64()),
                                               "map<string,bigint>"),
    (pa.struct([("x", pa.int8())]), "struct<x:tinyint>"),
])
def test_arrow_types_get_their_databricks_names(arrow, name):
    assert databricks_type(arrow) == name


@pytest.mark.parametrize(("before", "after", "widening"), [
    ("int", "bigint", True), ("tinyint", "int", True), ("bigint", "int", False),
    ("float", "double", True), ("int", "double", True), ("double", "float", False),
    ("decimal(12,2)", "decimal(14,2)", True), ("decimal(12,2)", "decimal(12,3)", False),
    ("decimal(12,2)", "decimal(14,3)", True), ("int", "decimal(12,2)", True),
    ("date", "timestamp_ntz", True), ("int", "string", False), ("string", "int", False),
])
def test_type_changes_are_widening_only_when_every_value_fits(before, after, widening):
    assert is_widening(before, after) is widening


def test_every_kind_of_change_is_classified():
    after = pa.schema([("id", pa.string(), True), ("qty", pa.int64()),
                       ("cost", pa.decimal128(10, 2)), ("at", pa.timestamp("us")),
                       ("note", pa.string())])
    assert diff(observe(BASE), observe(after)) == [
        Change("ADD_COLUMN", "note", after="string"),
        Change("DROP_COLUMN", "day", before="date"),
        Change("NULLABILITY", "id", "NOT NULL", "NULL", True),
        Change("CHANGE_TYPE", "qty", "int", "bigint", True),
        Change("CHANGE_TYPE", "cost", "decimal(12,2)", "decimal(10,2)", False)]
    assert diff(observe(BASE), observe(BASE)) == []


def test_a_version_is_written_only_when_the_columns_change(tmp_path):
    history = SchemaHistory(ParquetLake(uri=str(tmp_path)), "supply")
    first, new = history.record(observe(BASE), "run-1")
    assert (first.version, new, first.changes) == (1, True, ())
    same, new = history.record(observe(BASE), "run-2")
    assert (same.version, new, same.run_id) == (1, False, "run-1")
    wider = BASE.set(1, pa.field("qty", pa.int64()))
    second, new = history.record(observe(wider), "run-3")
    assert (second.version, new) == (2, True)
    assert [c.describe() for c in second.changes] == [
        "CHANGE_TYPE qty int -> bigint (widening)"]
    assert [v.version for v in history.versions()] == [1, 2]
    assert history.version(2) == second  # what was written reads back the same
    with pytest.raises(KeyError, match=r"no schema version 7 \(known: v1, v2\)"):
        history.version(7)
    assert sorted(p.name for p in (tmp_path / "supply" / "_schema").iterdir()) == [
        "v0001.json", "v0002.json"]
