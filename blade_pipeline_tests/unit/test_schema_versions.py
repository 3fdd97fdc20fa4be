"""Schema changes classified: added, dropped, retyped (widening or narrowing),
nullability; versions recorded in a lake only when the columns change; the policy's decision
on each change, values fitted to the model's types, the expected version and its acts."""

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from blade_pipeline.config.pandera_models import model_columns
from blade_pipeline.config.sources import SchemaPolicy, source_for
from blade_pipeline.steps import schema_policy
from blade_pipeline.steps.schema_policy import decide, fit
from blade_pipeline.steps.schema_versions import (
    Change,
    SchemaHistory,
    SchemaVersion,
    databricks_type,
    diff,
    is_widening,
    observe,
)
from blade_pipeline.storage.lake import ParquetLake

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


# ---- the policy (schema_policy.py) --------------------------------------------------------
SUPPLY = source_for("supply")


def with_policy(**policy: str):
    return SUPPLY.model_copy(update={"schema_policy": SchemaPolicy(**policy)})


@pytest.mark.parametrize(("policy", "change", "outcome"), [
    ({}, Change("ADD_COLUMN", "note", after="string"), "evolved"),
    ({"on_new_column": "ignore"}, Change("ADD_COLUMN", "note", after="string"), "ignored"),
    ({"on_new_column": "fail"}, Change("ADD_COLUMN", "note", after="string"), "blocked"),
    ({"on_new_column": "ignore"}, Change("ADD_COLUMN", "location", after="string"), "evolved"),
    ({}, Change("DROP_COLUMN", "location", before="string"), "blocked"),
    ({"on_dropped_column": "allow"}, Change("DROP_COLUMN", "location", before="string"),
     "allowed"),
    ({"on_dropped_column": "allow"}, Change("DROP_COLUMN", "nomenclature", before="string"),
     "blocked"),  # required by the model
    ({}, Change("CHANGE_TYPE", "quantity_on_hand", "int", "bigint", True), "blocked"),
    ({"on_type_change": "widen"}, Change("CHANGE_TYPE", "quantity_on_hand", "int", "bigint",
                                         True), "widened"),
    ({"on_type_change": "widen"}, Change("CHANGE_TYPE", "quantity_on_hand", "bigint", "int",
                                         False), "blocked"),
    ({}, Change("NULLABILITY", "location", "NOT NULL", "NULL", True), "noted"),
])
def test_each_change_gets_the_policys_decision(policy, change, outcome):
    assert decide(with_policy(**policy), change).outcome == outcome


@pytest.mark.parametrize(("values", "target", "misfits"), [
    (pa.array([1, 3_000_000_000, None, -2**31], pa.int64()), pa.int32(), [1]),
    (pa.array([Decimal("9999999999.99"), Decimal("10000000000.00"), Decimal("-1.25")],
              pa.decimal128(18, 2)), pa.decimal128(12, 2), [1]),
    (pa.array([Decimal("1.25"), Decimal("1.255")], pa.decimal128(18, 3)),
     pa.decimal128(12, 2), [1]),
    (pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 5)], pa.timestamp("us")),
     pa.date32(), [1]),
])
def test_a_value_fits_when_it_survives_the_cast_and_back(values, target, misfits):
    cast, misfit = fit(values, target)
    assert cast.type == target
    assert [i for i, m in enumerate(misfit.to_pylist()) if m] == misfits
    assert all(cast[i].as_py() is None for i in misfits)


def test_a_plan_fits_the_batch_to_the_model_and_names_what_it_rescues():
    model = pa.schema([pa.field(n, t.arrow_type) for n, t in model_columns("supply").items()])
    expected = SchemaVersion(1, observe(model), "t", "r")
    sent = model.set(model.get_field_index("quantity_on_hand"),
                     pa.field("quantity_on_hand", pa.int64()))
    sent = sent.remove(sent.get_field_index("location")).append(pa.field("note", pa.string()))
    plan = schema_policy.plan(with_policy(on_new_column="ignore", on_type_change="widen",
                                          on_dropped_column="allow"), sent, 2, expected)
    assert plan.of(schema_policy.WARNED) == [
        "DROP_COLUMN location (was string): allowed (on_dropped_column: allow)",
        "CHANGE_TYPE quantity_on_hand int -> bigint (widening): widened (on_type_change: "
        "widen)"]
    assert plan.of("ignored") == ["ADD_COLUMN note string: ignored (on_new_column: ignore)"]
    assert not plan.blocked and not plan.adopts  # an ignored column keeps v1 expected
    rows = {n: [None, None] for n in sent.names}
    rows["quantity_on_hand"] = [5, 3_000_000_000]
    batch = pa.RecordBatch.from_pydict(rows, schema=sent)
    fitted, rescued = plan.conform(batch)
    assert fitted.schema.field("quantity_on_hand").type == pa.int32()
    assert "note" not in fitted.schema.names and fitted.column("location").null_count == 2
    assert fitted.column("quantity_on_hand").to_pylist() == [5, None]
    assert rescued.rows(named=True) == [{
        "index": 1, "column": "quantity_on_hand",
        "why": "quantity_on_hand: does not fit int (schema v1; the source sends bigint, v2) "
               "(got 3000000000)",
        "reason": "quantity_on_hand: does not fit int (schema v1; the source sends bigint, "
                  "v2)"}]
    unchanged = schema_policy.plan(SUPPLY, model, 1, expected)
    assert unchanged.decisions == () and unchanged.conform(fitted.select(model.names))[1] is None


def test_the_expected_version_is_chosen_and_every_act_is_kept(tmp_path):
    history = SchemaHistory(ParquetLake(uri=str(tmp_path)), "supply")
    assert history.expected_version() == (None, False) and history.expected_number() is None
    history.record(observe(BASE), "run-1")
    history.record(observe(BASE.append(pa.field("note", pa.string()))), "run-2")
    assert history.expected_number() == 1 and history.expected() is None  # the first one
    history.set_expected(2, "accept", "ana", "reviewed")
    pinned = history.set_expected(1, "pin", "bo", "roll back", pinned=True)
    assert history.expected_version() == (history.version(1), True)
    assert [(a["act"], a["version"], a["previous"], a["by"]) for a in pinned.acts] == [
        ("accept", 2, 1, "ana"), ("pin", 1, 2, "bo")]
    with pytest.raises(KeyError, match="no schema version 5"):
        history.set_expected(5, "pin", "bo")
    assert [v.version for v in history.versions()] == [1, 2]  # expected.json is not a version
