"""Raw rows -> BLADE items, and validation with per-row reasons (no servers)."""

import datetime as dt
import hashlib
import json

import pyarrow as pa
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.steps.items import ITEM_SCHEMA, IngestRun, ItemBuilder
from blade_pipeline.steps.uploading import Checkpoint, Piece, StagedFile, changed_items, rebatch
from blade_pipeline.steps.validation import PartitionValidator
from blade_pipeline.storage.catalog import KnownItems

RUN = IngestRun("run-1", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
LM = dt.datetime(2026, 1, 1, 12, 0)


def readiness(**overrides) -> dict:
    row = {"report_id": "000000001", "tail_number": "87-0123", "aircraft_type": "F-16C",
           "report_date": dt.date(2026, 1, 1), "status": "FMC", "reason": None,
           "base": "Nellis AFB", "classification": "UNCLASS", "last_modified": LM}
    return row | overrides


SCHEMA = pa.schema([
    ("report_id", pa.string()), ("tail_number", pa.string()), ("aircraft_type", pa.string()),
    ("report_date", pa.date32()), ("status", pa.string()), ("reason", pa.string()),
    ("base", pa.string()), ("classification", pa.string()), ("last_modified", pa.timestamp("us")),
])


def batch(rows: list[dict], schema: pa.Schema = SCHEMA) -> pa.RecordBatch:
    """Rows typed as the warehouse types them."""
    return pa.RecordBatch.from_pylist(rows, schema=pa.schema(
        [f for f in schema if f.name in rows[0]]))


def test_items_follow_the_design_contract():
    items = ItemBuilder(source_for("readiness"), RUN).build(
        batch([readiness(), readiness(report_id="000000002", classification=None)]))
    assert items.schema == ITEM_SCHEMA
    first = items.to_pylist()[0]
    assert first["item_id"] == "READY-000000001"
    assert first["data_type"] == "readiness"
    data = json.loads(first["data"])
    assert list(data) == sorted(data) and data["status"] == "FMC"
    assert first["content_hash"] == hashlib.sha256(first["data"].encode()).hexdigest()
    assert json.loads(first["metadata"]) == {
        "source": "databricks", "warehouse_id": "demo", "catalog": "main", "schema": "blade",
        "table": "blade_readiness_data", "ingested_at": "2026-01-02T03:04:05+00:00",
        "run_id": "run-1", "hash_version": 1}
    assert items.column("classification").to_pylist() == ["UNCLASS", "UNCLASS"]


def test_content_hash_changes_only_with_the_data():
    builder = ItemBuilder(source_for("readiness"), RUN)
    other_run = ItemBuilder(source_for("readiness"), IngestRun("run-2", RUN.ingested_at))
    a = builder.build(batch([readiness()])).column("content_hash")[0]
    assert other_run.build(batch([readiness()])).column("content_hash")[0] == a
    assert builder.build(batch([readiness(status="PMC", reason="x")])).column(
        "content_hash")[0] != a


def test_invalid_rows_get_a_reason_each_and_valid_rows_pass():
    validator = PartitionValidator(source_for("readiness"))
    outcome = validator.validate(batch([
        readiness(),
        readiness(report_id="000000002", status="BROKEN"),
        readiness(report_id=None),
        readiness(report_id="000000003", tail_number="XX"),
    ]))
    assert outcome.valid.column("report_id").to_pylist() == ["000000001"]
    reasons = dict(zip(outcome.quarantined.column("_row").to_pylist(),
                       outcome.quarantined.column("_reason").to_pylist(), strict=True))
    assert "status: isin" in reasons[1] and "(got BROKEN)" in reasons[1]
    assert "report_id: not_nullable" in reasons[2]
    assert "tail_number: str_matches" in reasons[3] and "(got XX)" in reasons[3]
    assert not outcome.schema_errors


def test_items_are_built_for_the_valid_rows_only_without_a_filtered_copy():
    rows = batch([readiness(), readiness(report_id="000000002", status="BROKEN"),
                  readiness(report_id="000000003")])
    outcome = PartitionValidator(source_for("readiness")).validate(rows)
    assert outcome.rows is rows and outcome.valid_rows == 2
    builder = ItemBuilder(source_for("readiness"), RUN)
    items = builder.build(outcome.rows, outcome.keep)
    assert items.column("item_id").to_pylist() == ["READY-000000001", "READY-000000003"]
    assert items.equals(builder.build(outcome.valid))
    nothing = builder.build(rows, pa.array([False, False, False]))
    assert nothing.num_rows == 0 and nothing.schema == ITEM_SCHEMA


def test_duplicate_keys_keep_the_newest_row_in_whatever_batch_it_arrives():
    newer = LM + dt.timedelta(hours=1)
    duplicates = pa.table({"key": ["000000002", "000000004"],
                           "newest": pa.array([newer, LM], pa.timestamp("us"))})
    validator = PartitionValidator(source_for("readiness"), duplicates)
    first = validator.validate(batch([readiness(report_id="000000001"),
                                      readiness(report_id="000000002"),  # older: quarantined
                                      readiness(report_id="000000004"),  # tie: first is kept
                                      readiness(report_id="000000004")]))
    second = validator.validate(batch([readiness(report_id="000000002", last_modified=newer),
                                       readiness(report_id="000000003"),
                                       readiness(report_id="000000004")]))
    assert first.valid.column("report_id").to_pylist() == ["000000001", "000000004"]
    assert second.valid.column("report_id").to_pylist() == ["000000002", "000000003"]
    assert second.valid.column("last_modified")[0].as_py() == newer
    assert first.quarantined.column("_row").to_pylist() == [1, 3]
    assert second.quarantined.column("_row").to_pylist() == [6]
    reasons = first.quarantined.column("_reason").to_pylist()
    assert all("duplicate primary key report_id" in r for r in reasons)
    assert validator.reasons["duplicate primary key"] == 3


def test_missing_or_retyped_columns_are_schema_errors_for_every_row():
    validator = PartitionValidator(source_for("readiness"))
    rows = [{k: v for k, v in readiness(report_id=str(i).zfill(9)).items() if k != "status"}
            for i in range(3)]
    outcome = validator.validate(batch(rows))
    assert outcome.valid.num_rows == 0 and outcome.quarantined.num_rows == 3
    assert outcome.schema_errors == ["required column 'status' is missing"]
    retyped = batch([readiness() | {"report_date": "2026-01-01"}],
                    SCHEMA.set(3, pa.field("report_date", pa.string())))
    errors = PartitionValidator(source_for("readiness")).validate(retyped).schema_errors
    assert any("column 'report_date' has type String" in e for e in errors)


def _diff_items() -> pa.Table:
    stamps = [dt.datetime(2026, 6, 1, 12, 0, i) for i in range(4)]
    return pa.table({"item_id": ["A-1", "A-2", "A-3", "A-4"],
                     "content_hash": ["h1", "h2", "h3", "h4"],
                     "last_modified": pa.array(stamps, pa.timestamp("us"))})


def test_changed_items_keeps_new_and_changed_only():
    diff = changed_items(_diff_items(), KnownItems({"A-1": "h1", "A-2": "old"}))
    assert diff.todo.column("item_id").to_pylist() == ["A-2", "A-3", "A-4"]
    assert (diff.unchanged, diff.stale) == (1, 0)


def test_changed_items_never_replaces_a_newer_catalog_row():
    known = KnownItems({"A-1": "h1", "A-2": "old", "A-3": "old", "A-4": "old"},
                       {"A-1": "2026-06-01T12:00:00", "A-2": "2026-06-02T00:00:00",
                        "A-3": "2026-06-01T11:00:00+00:00", "A-4": None})
    diff = changed_items(_diff_items(), known)
    assert diff.todo.column("item_id").to_pylist() == ["A-3", "A-4"]  # older / unknown: upload
    assert (diff.unchanged, diff.stale) == (1, 1)


def test_changed_items_compares_offset_timestamps_in_utc():
    known = KnownItems({"A-1": "old"}, {"A-1": "2026-06-01T14:00:00+02:00"})  # = 12:00 UTC
    assert changed_items(_diff_items(), known).todo.num_rows == 4
    known = KnownItems({"A-1": "old"}, {"A-1": "2026-06-01T14:00:01+02:00"})
    assert changed_items(_diff_items(), known).stale == 1


@pytest.mark.parametrize("sizes", [[3, 3, 3], [10], [1] * 7, [4, 0, 5]])
def test_rebatch_gives_exact_sizes(sizes):
    start = 0
    batches = []
    for n in sizes:
        batches.append(pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())}))
        start += n
    staged = StagedFile("d", "", Checkpoint(None, "", "", start, 4))
    pieces, at = [], 0
    for b in batches:
        pieces.append((b, Piece(staged, at, at + b.num_rows)))
        at += b.num_rows
    rebatched = list(rebatch(iter(pieces), 4))
    out = [table for table, _ in rebatched]
    assert [t.num_rows for t in out[:-1]] == [4] * (len(out) - 1)
    assert sum(t.num_rows for t in out) == start
    assert [x for t in out for x in t.column("x").to_pylist()] == list(range(start))
    # each table names the rows of the file it holds: contiguous, in order, all of them
    parts = [p for _, table_parts in rebatched for p in table_parts]
    assert [(p.start, p.stop) for p in parts] == list(zip(
        [0, *(p.stop for p in parts[:-1])], [p.stop for p in parts], strict=True))
    assert parts[-1].stop == start
    assert [t.num_rows for t in out] == [sum(p.rows for p in table_parts)
                                         for _, table_parts in rebatched]


def test_large_batches_keep_every_row_in_order():
    rows = [readiness(report_id=str(i).zfill(9)) for i in range(40_000)]
    items = ItemBuilder(source_for("readiness"), RUN).build(batch(rows))
    assert items.num_rows == 40_000
    assert items.column("item_id").to_pylist() == [f"READY-{i:09d}" for i in range(40_000)]
