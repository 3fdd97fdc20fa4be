"""Case 10, ordering: a key present on two days must end in the catalog with its newest row,
whatever order the two partitions run in (backfills and concurrent runs do not run days in
order). The upload diff leaves items whose catalog copy has a newer ``last_modified``."""

from __future__ import annotations

import datetime as dt

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key
from blade_pipeline_tests.expectations import materialization
from blade_pipeline_tests.faults.conftest import (
    DAY,
    failure_messages,
    make_resources,
    run,
)


def key_on_two_days(reference, day: str) -> tuple[str, str, dt.datetime]:
    """(record_id, the other day, newest last_modified) of a key stored on ``day`` and on an
    earlier day (the generator's ``duplicate_key`` rows whose neighbour is on another day)."""
    [(key, other, newest)] = reference.execute(
        "SELECT record_id, min(CAST(last_modified AS DATE))::STRING, max(last_modified) "
        "FROM blade.blade_maintenance_data GROUP BY record_id "
        "HAVING count(DISTINCT CAST(last_modified AS DATE)) = 2 "
        "AND max(CAST(last_modified AS DATE)) = $day ORDER BY record_id LIMIT 1",
        {"day": day}).fetchall()
    return key, other, newest


def test_10_older_partition_run_last_does_not_overwrite_the_newer_row(
        fault_warehouse, start_catalog, tmp_path, dagster_instance, reference_db, recorded):
    key, older_day, newest = key_on_two_days(reference_db, DAY)
    source = source_for("maintenance")
    res = make_resources(fault_warehouse, start_catalog(), tmp_path / "lake")
    for day in (DAY, older_day):  # newest day first, as a backfill or a race may do
        result = run(source, res, dagster_instance, recorded, day=day)
        assert result.success, failure_messages(result)
    assert materialization(result, catalog_key(source))["kept_newer_in_catalog"] >= 1
    item = res["catalog"].get(f"{source.item_id_prefix}-{key}")
    assert item is not None
    assert dt.datetime.fromisoformat(item["last_modified"]).replace(tzinfo=None) == newest
    assert item["version"] == 1
