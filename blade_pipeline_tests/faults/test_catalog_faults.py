"""Cases 4 and 5: catalog 503 bursts and 429 + Retry-After; catalog killed mid-upload."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key
from blade_pipeline.devservices.processes import ServerProcess
from blade_pipeline_tests.faults.conftest import (
    DAY,
    assert_exact,
    catalog_items,
    failure_messages,
    kill_mid_upload,
    make_resources,
    materialization,
    run,
    stored_items,
)


def test_4a_catalog_503_burst_is_ridden_out_and_the_catalog_ends_exact(
        fault_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    catalog = start_catalog("--fail-first", "4", "--fail-status", "503")
    res = make_resources(fault_warehouse, catalog, lake_dir, max_attempts=6)
    source = source_for("supply")
    result = run(source, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    items = assert_exact(res, reference_db, "supply")
    assert materialization(result, catalog_key(source))["created"] == len(items)
    assert catalog.log_text().count("injected fault #") == 4


def test_4b_catalog_429_with_retry_after_is_waited_out(
        fault_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    catalog = start_catalog("--fail-first", "2", "--fail-status", "429", "--retry-after", "2")
    # Backoff of its own would be 0.05..0.5 s: waiting >= 4 s proves Retry-After was obeyed.
    res = make_resources(fault_warehouse, catalog, lake_dir, max_attempts=4)
    source = source_for("readiness")
    result = run(source, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    [catalog_step] = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"
                      and e.step_key.endswith("catalog")]
    assert catalog_step.event_specific_data.duration_ms >= 4_000
    assert catalog.log_text().count("injected fault #") == 2
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert_exact(res, reference_db, "readiness")


@pytest.mark.slow
def test_5_catalog_killed_mid_upload_then_restarted_ends_exact(
        fault_warehouse, start_catalog, lake_dir, tmp_path, dagster_instance, reference_db,
        recorded):
    db = tmp_path / "catalog.sqlite3"
    catalog = start_catalog("--latency-ms", "400", db=db)
    # 100-item batches, 2 in flight, 400 ms each: the upload of ~1 400 items lasts ~3 s.
    res = make_resources(fault_warehouse, catalog, lake_dir, batch_size=100, max_attempts=2)
    source = source_for("maintenance")
    killer = kill_mid_upload(catalog, 300)
    result = run(source, res, dagster_instance, recorded)
    killer.join()
    assert killer.at, "the catalog was never killed"
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "[maintenance]" in message and catalog.base_url in message

    restarted = ServerProcess(catalog.args, catalog.port, catalog.log_path)
    restarted.start("/healthz", timeout=60)
    try:
        assert stored_items(restarted) >= killer.at[0], "acknowledged items were lost"
        again = run(source, res, dagster_instance, recorded, selection=[catalog_key(source)])
        assert again.success, failure_messages(again)
        items = assert_exact(res, reference_db, "maintenance")
        uploaded = materialization(again, catalog_key(source))
        assert uploaded["updated"] == 0
        assert uploaded["created"] + uploaded["unchanged"] + uploaded["skipped_by_checkpoint"] \
            == len(items)
        assert uploaded["created"] < len(items), "the re-execution re-sent everything"
    finally:
        restarted.stop()


def test_4c_a_dead_catalog_costs_one_retry_layer_of_requests_not_a_product_of_them(
        fault_warehouse, start_catalog, lake_dir, dagster_instance, recorded):
    # every request answers 503: the client's 3 attempts are all the step makes (the step's
    # RetryPolicy does not repeat requests the client already retried: 3, not 3 x 4 = 12)
    catalog = start_catalog("--fail-rate", "1.0", "--fail-status", "503")
    res = make_resources(fault_warehouse, catalog, lake_dir, max_attempts=3)
    source = source_for("supply")
    result = run(source, res, dagster_instance, recorded)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "[supply]" in message and "after 3 attempts" in message and "HTTP 503" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert catalog.log_text().count("injected fault #") == 3


def test_4d_items_the_catalog_refuses_are_kept_with_its_reason_and_a_rerun_replays_them(
        fault_warehouse, start_catalog, lake_dir, tmp_path, dagster_instance, reference_db,
        recorded):
    db = tmp_path / "refusing-catalog.sqlite3"
    refusing = start_catalog("--reject-ids", r"[37]$", db=db)  # ~1 in 5 ids refused
    res = make_resources(fault_warehouse, refusing, lake_dir)
    source = source_for("maintenance")
    result = run(source, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    uploaded = materialization(result, catalog_key(source))
    lake = res["lake"]
    rejected_dir = lake.rejected_dir(lake.partition_dir("maintenance", DAY))
    files = lake.list_files(rejected_dir)
    assert files and all(f.rsplit("/", 1)[1].startswith("rows-") for f in files)
    kept = pa.concat_tables(pq.read_table(f) for f in files)
    ids = kept.column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == uploaded["rejected"] > 0
    assert all(i[-1] in "37" for i in ids)
    assert set(kept.column("_reason").to_pylist()) == {
        "item_id: refused by this catalog's policy (matches '[37]$')"}
    staged = pq.read_table(lake.partition_dir("maintenance", DAY) + "/part-0.parquet")
    assert set(staged.schema.names) <= set(kept.schema.names)  # the items as they were sent
    in_catalog = {i["item_id"] for i in catalog_items(res["catalog"], source.catalog_data_source)}
    assert not in_catalog & set(ids) and len(in_catalog) == uploaded["created"]
    logged = [r.user_message for r in dagster_instance.all_logs(result.run_id)]
    assert any("kept with the catalog's reasons under" in m and "maintenance/rejected" in m
               for m in logged)

    # the policy lifted (same store): re-running the day sends exactly the refused items
    # (the day's checkpoint counts them as answered: the catalog asset alone would skip them)
    refusing.stop()
    res = make_resources(fault_warehouse, start_catalog(db=db), lake_dir)
    again = run(source, res, dagster_instance, recorded)
    assert again.success, failure_messages(again)
    replayed = materialization(again, catalog_key(source))
    assert (replayed["created"], replayed["rejected"]) == (len(ids), 0)
    assert lake.list_files(rejected_dir) == []  # the day's upload started afresh: cleared
    assert_exact(res, reference_db, "maintenance")
