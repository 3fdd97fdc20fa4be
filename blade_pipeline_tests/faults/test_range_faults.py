"""The partition fault cases as range runs: three days in one run (cases 1, 3, 4a, 5).

Same faults, same end state as the single-day cases (:func:`assert_exact` over the three days:
every valid row once, newest hash, version 1, every invalid row quarantined per day).
Cases 6 (worker killed) and 10 (concurrent runs and the sensor) have their range variants in
their own files; terminate + re-execute of a range is in ``integration/test_live_dagster.py``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.devservices.processes import ServerProcess
from blade_pipeline_tests.faults.conftest import (
    RANGE,
    ROWS,
    WAREHOUSE_ARGS,
    assert_exact,
    failure_messages,
    kill_mid_extract,
    kill_mid_upload,
    make_resources,
    materialized,
    run,
    slow_extract,
    stored_items,
)


def day_materializations(result: dg.ExecuteInProcessResult, key: dg.AssetKey,
                         instance: dg.DagsterInstance) -> dict[str, dict]:
    """Partition -> metadata of the run's materializations of ``key``, as the instance
    stored them (a step that fails after some days were done keeps those days)."""
    events = [e.dagster_event.event_specific_data.materialization for e in instance.all_logs(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
    return {m.partition: {k: v.value for k, v in m.metadata.items()}
            for m in events if m.asset_key == key}


def uploaded(result: dg.ExecuteInProcessResult, source, instance: dg.DagsterInstance) -> int:
    return sum(m["uploaded"] for m in day_materializations(
        result, catalog_key(source), instance).values())


@pytest.mark.slow
def test_1r_transient_503s_in_a_range_run_are_retried_and_the_catalog_ends_exact(
        start_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    flaky = start_warehouse(ROWS, *WAREHOUSE_ARGS, "--fail-rate", "0.3", "--fault-seed", "4",
                            "--latency-ms", "500")
    res = make_resources(flaky, start_catalog(), lake_dir)
    source = source_for("maintenance")
    result = run(source, res, dagster_instance, recorded, days=RANGE)
    assert result.success, failure_messages(result)
    assert set(day_materializations(result, staged_key(source), dagster_instance)) == set(RANGE)
    items = assert_exact(res, reference_db, "maintenance", days=RANGE)
    assert uploaded(result, source, dagster_instance) == len(items)
    assert flaky.log_text().count("injected HTTP 503") >= 2


@pytest.mark.slow
@pytest.mark.extended
def test_3r_warehouse_killed_mid_range_extract_leaves_only_whole_days(
        start_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    server, res = slow_extract(start_warehouse, start_catalog(), lake_dir)
    source = source_for("sortie")
    killer = kill_mid_extract(server, lake_dir)
    result = run(source, res, dagster_instance, recorded, days=RANGE, batch_rows=100)
    killer.join()
    assert killer.at, "the warehouse was never killed mid-extract"
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "[sortie] Databricks SQL warehouse" in message and server.base_url in message
    assert not list(lake_dir.rglob(".tmp-*")), "temp files left behind"
    assert not materialized(result, staged_key(source))
    lake = res["lake"]
    for day in RANGE:  # a day is absent or whole: never part of a day
        footer = lake.footer_metadata(lake.partition_dir("sortie", day))
        if footer is not None:
            pf = lake.parquet_file(lake.partition_dir("sortie", day))
            assert pf.metadata.num_rows == footer["valid"]
            assert footer["extracted"] == footer["valid"] + footer["quarantined"] > 500

    restarted = ServerProcess(server.args, server.port, server.log_path)
    restarted.start("/healthz", timeout=120)
    try:
        again = run(source, res, dagster_instance, recorded, days=RANGE, batch_rows=100)
        assert again.success, failure_messages(again)
        assert_exact(res, reference_db, "sortie", days=RANGE)
    finally:
        restarted.stop()


def test_4ar_catalog_503_burst_in_a_range_run_is_ridden_out(
        fault_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    catalog = start_catalog("--fail-first", "4", "--fail-status", "503")
    res = make_resources(fault_warehouse, catalog, lake_dir, max_attempts=6)
    source = source_for("supply")
    result = run(source, res, dagster_instance, recorded, days=RANGE)
    assert result.success, failure_messages(result)
    items = assert_exact(res, reference_db, "supply", days=RANGE)
    assert uploaded(result, source, dagster_instance) == len(items)
    assert catalog.log_text().count("injected fault #") == 4


@pytest.mark.slow
def test_5r_catalog_killed_mid_range_upload_then_restarted_ends_exact(
        fault_warehouse, start_catalog, lake_dir, tmp_path: Path, dagster_instance,
        reference_db, recorded):
    db = tmp_path / "catalog.sqlite3"
    catalog = start_catalog("--latency-ms", "500", db=db)
    # 100-item batches, 2 in flight, 500 ms each: the newest day (~1 400 items) is uploaded
    # in ~4 s, the two older ones (~900) in ~2.5 s more
    res = make_resources(fault_warehouse, catalog, lake_dir, batch_size=100, max_attempts=2)
    source = source_for("maintenance")
    killer = kill_mid_upload(catalog, 1_600)  # past the newest day (uploaded first)
    result = run(source, res, dagster_instance, recorded, days=RANGE)
    killer.join()
    assert killer.at, "the catalog was never killed"
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "[maintenance]" in message and catalog.base_url in message
    done_before = day_materializations(result, catalog_key(source), dagster_instance)
    assert RANGE[-1] in done_before and RANGE[0] not in done_before  # newest day done first

    restarted = ServerProcess(catalog.args, catalog.port, catalog.log_path)
    restarted.start("/healthz", timeout=60)
    try:
        assert stored_items(restarted) >= killer.at[0], "acknowledged items were lost"
        again = run(source, res, dagster_instance, recorded, days=RANGE,
                    selection=[catalog_key(source)])
        assert again.success, failure_messages(again)
        items = assert_exact(res, reference_db, "maintenance", days=RANGE)
        days = day_materializations(again, catalog_key(source), dagster_instance)
        assert set(days) == set(RANGE)
        skipped = sum(m["skipped_by_checkpoint"] for m in days.values())
        assert skipped >= 1_400, "the re-execution did not resume from the checkpoints"
        assert sum(m["uploaded"] + m["unchanged"] + m["skipped_by_checkpoint"]
                   + m["kept_newer_in_catalog"] for m in days.values()) == sum(
            m["items_total"] for m in days.values())
        assert sum(m["uploaded"] for m in days.values()) < len(items)
    finally:
        restarted.stop()
