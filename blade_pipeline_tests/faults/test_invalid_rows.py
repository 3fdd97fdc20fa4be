"""Case 7: every kind of invalid row the generator makes is quarantined with a per-row reason
naming the broken field; the valid rows reach the catalog exactly."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import polars as pl
import pytest
from pandera.errors import SchemaErrors

from blade_pipeline.config.pandera_models import ReadinessRecord
from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline_tests.faults.conftest import (
    DAYS,
    END_DATE,
    assert_exact,
    failure_messages,
    invalid_of_day,
    make_resources,
    materialization,
    quarantine,
    run,
)

#: kind -> what its reason must say (``{field}`` = the field the row breaks).
REASON_OF_KIND = {
    "bad_enum": "{field}: isin(",
    "negative_value": "{field}: greater_than_or_equal_to(0)",
    "missing_key": "{field}: not_nullable",
    "wrong_shape": "{field}",
    "duplicate_key": "duplicate primary key",
}


def day_with_every_kind(reference, data_type: str) -> str:
    """A day holding every invalid kind of ``data_type``, a duplicate key included (a
    ``duplicate_key`` row only collides inside a partition when its neighbour is on its day)."""
    pk = source_for(data_type).primary_key
    table = generator.TABLES[data_type]
    wanted = set(generator.INVALID_FIELDS[data_type])
    best: tuple[int, str] = (-1, "")
    for back in range(1, DAYS):
        day = (END_DATE - dt.timedelta(days=back)).isoformat()
        kinds = {r["kind"] for r in invalid_of_day(reference, data_type, day)} - {"duplicate_key"}
        [(repeats,)] = reference.execute(
            f"SELECT count(*) FROM (SELECT {pk} FROM blade.{table} WHERE "
            f"CAST(last_modified AS DATE) = $day AND {pk} IS NOT NULL GROUP BY {pk} "
            "HAVING count(*) > 1)", {"day": day}).fetchall()
        if repeats:
            kinds.add("duplicate_key")
        if kinds == wanted:
            return day
        best = max(best, (len(kinds), day))
    pytest.fail(f"no day of {data_type} holds every invalid kind (best: {best})")


@pytest.fixture(scope="module")
def shared_catalog(start_catalog):
    return start_catalog()


@pytest.mark.parametrize("data_type", ["maintenance", "sortie", "supply", "readiness"])
def test_7_every_invalid_kind_is_quarantined_with_a_reason_and_valid_rows_uploaded(
        data_type, fault_warehouse, shared_catalog, lake_dir, dagster_instance, reference_db,
        recorded):
    # The day is picked for its invalid rows; its share may exceed the production threshold,
    # which case 7 is not about (test_assets_end_to_end covers the blocking check).
    source = source_for(data_type).model_copy(update={"max_invalid_fraction": 0.25})
    day = day_with_every_kind(reference_db, data_type)
    res = make_resources(fault_warehouse, shared_catalog, lake_dir)
    result = run(source, res, dagster_instance, recorded, day=day)
    assert result.success, failure_messages(result)
    items = assert_exact(res, reference_db, data_type, day)
    assert materialization(result, catalog_key(source))["created"] == len(items)

    table = quarantine(res["lake"], data_type, day)
    by_key: dict[str | None, list[str]] = defaultdict(list)
    for key, reason in zip(table.column(source.primary_key).to_pylist(),
                           table.column("_reason").to_pylist(), strict=True):
        by_key[key].append(reason)
    seen_kinds = set()
    for row in invalid_of_day(reference_db, data_type, day):
        reasons = by_key.get(row["key"], [])
        if row["kind"] == "duplicate_key" and not reasons:
            continue  # its neighbour lies on another day: the only row of its key here
        want = REASON_OF_KIND[row["kind"]].format(field=row["field"])
        assert any(want in reason for reason in reasons), (row, reasons)
        seen_kinds.add(row["kind"])
    assert seen_kinds == set(generator.INVALID_FIELDS[data_type])
    staged = materialization(result, staged_key(source))
    assert staged["rows_quarantined"] == table.num_rows
    assert staged["quarantine_reasons"], "no reason summary in the staged metadata"


def test_7_regression_future_report_date_is_quarantined():
    """The generator's readiness ``wrong_shape`` row carries report_date = last_modified + 400
    days; ReadinessRecord used to accept it and the row reached the catalog."""
    now = dt.datetime(2026, 6, 29, 12)
    frame = pl.DataFrame({
        "report_id": ["000000001", "000000002"], "tail_number": ["12-3456", "12-3456"],
        "aircraft_type": ["F-16C", "F-16C"],
        "report_date": [now.date(), now.date() + dt.timedelta(days=400)],
        "status": ["FMC", "FMC"], "reason": [None, None], "base": ["Hill AFB", "Hill AFB"],
        "classification": ["UNCLASS", "UNCLASS"], "last_modified": [now, now]},
        schema_overrides={"reason": pl.String})
    with pytest.raises(SchemaErrors, match="report_date is after last_modified"):
        ReadinessRecord.validate(frame, lazy=True)
    ReadinessRecord.validate(frame.head(1), lazy=True)
