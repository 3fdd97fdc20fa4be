"""Range runs: many days in one run give what the same days run one by one give, and a bad
day does not hold the good days hostage. Real mock warehouse and catalog servers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import build_blade_assets, catalog_key, staged_key
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, END_DATE, WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.expectations import catalog_items

ROWS = 20_000  # over 730 days: ~27 rows a day, the demo's size
FIRST = (END_DATE - dt.timedelta(days=20)).isoformat()
LAST = (END_DATE - dt.timedelta(days=1)).isoformat()
DAYS = [(dt.date.fromisoformat(FIRST) + dt.timedelta(days=n)).isoformat() for n in range(20)]


@pytest.fixture(scope="module")
def warehouse_server(start_warehouse):
    return start_warehouse(ROWS, "--invalid-fraction", "0.03")


def resources(warehouse_server, catalog_server, lake_dir) -> dict:
    return {"warehouse": DatabricksWarehouse(url=warehouse_url(warehouse_server),
                                             token=WAREHOUSE_TOKEN),
            "catalog": CatalogClient(base_url=catalog_server.base_url, token=CATALOG_TOKEN,
                                     batch_size=100, backoff_base_s=0.05, backoff_max_s=0.5),
            "lake": ParquetLake(uri=str(lake_dir))}


def run_range(source, res, first=FIRST, last=LAST, instance=None):
    return dg.materialize(build_blade_assets(source), resources=res, instance=instance,
                          raise_on_error=False,
                          tags={ASSET_PARTITION_RANGE_START_TAG: first,
                                ASSET_PARTITION_RANGE_END_TAG: last})


def run_day(source, res, day, instance=None):
    return dg.materialize(build_blade_assets(source), partition_key=day, resources=res,
                          instance=instance, raise_on_error=False)


def hashes(res, source) -> dict[str, str]:
    return {i["item_id"]: i["content_hash"]
            for i in catalog_items(res["catalog"], source.catalog_data_source)}


def staged_day(lake: ParquetLake, data_type: str, day: str, kind: str = "") -> list:
    table = pq.read_table(lake.partition_dir(data_type, day, kind) + "/part-0.parquet")
    column = "item_id" if not kind else "_reason"
    return sorted(table.column(column).to_pylist())


@pytest.mark.slow
def test_a_range_in_one_run_gives_what_its_days_one_by_one_give(
        warehouse_server, start_catalog, tmp_path):
    # one data type: every type goes through the one factory (the models' rules are held to
    # Pandera's on every type by unit/test_row_screen.py, and each type's day by case 7)
    data_type = "maintenance"
    source = source_for(data_type)
    ranged = resources(warehouse_server, start_catalog(), tmp_path / "ranged")
    daily = resources(warehouse_server, start_catalog(), tmp_path / "daily")
    instance = dg.DagsterInstance.ephemeral()
    result = run_range(source, ranged, instance=instance)
    assert result.success
    assert len(instance.get_runs()) == 1
    for day in DAYS:
        assert run_day(source, daily, day).success
    expected = hashes(daily, source)
    assert len(expected) > 20 * 15
    assert hashes(ranged, source) == expected
    for day in DAYS:  # each day's files are what the day alone stages
        for kind in ("", "quarantine"):
            assert staged_day(ranged["lake"], data_type, day, kind) == staged_day(
                daily["lake"], data_type, day, kind)
        footer = ranged["lake"].footer_metadata(ranged["lake"].partition_dir(data_type, day))
        assert footer["extracted"] == footer["valid"] + footer["quarantined"]
    # one materialization per day of both assets, one evaluation per check over the range
    for key in (staged_key(source), catalog_key(source)):
        assert instance.get_materialized_partitions(key) == set(DAYS)
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations) == [
        "invalid_fraction", "schema_changed", "schema_conforms"]
    assert all(e.passed and e.metadata["days_checked"].value == len(DAYS)
               for e in evaluations)
    catalog_events = [e for e in result.all_events if e.event_type_value ==
                      "ASSET_MATERIALIZATION" and e.asset_key == catalog_key(source)]
    meta = catalog_events[0].event_specific_data.materialization.metadata
    assert meta["items_total"].value == meta["uploaded"].value > 0
    # a second range run uploads nothing and a single day still runs alone
    again = run_range(source, ranged, instance=instance)
    assert again.success
    assert hashes(ranged, source) == expected
    assert run_day(source, ranged, DAYS[3], instance=instance).success


def test_a_bad_day_does_not_hold_the_good_days_hostage(warehouse_server, start_catalog,
                                                       tmp_path):
    strict = source_for("sortie").model_copy(
        update={"max_invalid_fraction": 0.0, "invalid_rows_allowed": 0})
    res = resources(warehouse_server, start_catalog(), tmp_path / "lake")
    instance = dg.DagsterInstance.ephemeral()
    result = run_range(strict, res, instance=instance)
    assert not result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations()
                    if e.check_name == "invalid_fraction"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    reasons = evaluation.metadata["failed_days"].value  # each failing day with its reason
    bad = sorted(reasons)
    good = sorted(set(DAYS) - set(bad))
    assert all("rows quarantined" in reasons[day] for day in bad)
    assert evaluation.metadata["days_failed"].value == len(bad)
    assert bad and good, "the seeded days should hold both clean and invalid days"
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert f"{len(bad)} of {len(DAYS)} days were not uploaded" in message
    assert all(day in message for day in bad[:20])
    assert "invalid_fraction" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    # the good days are in the catalog, the bad ones are not
    uploaded = {i["item_id"] for i in catalog_items(res["catalog"], strict.catalog_data_source)}
    for day in DAYS:
        ids = set(staged_day(res["lake"], "sortie", day))
        assert (ids <= uploaded) if day in good else not (ids & uploaded)
    status = get_and_update_asset_status_cache_value(instance, catalog_key(strict),
                                                     daily_partitions(strict))
    partitions = daily_partitions(strict)
    assert set(status.deserialize_materialized_partition_subsets(partitions)
               .get_partition_keys()) == set(good)
    assert set(status.deserialize_failed_partition_subsets(partitions)
               .get_partition_keys()) == set(bad)
    # re-running just a bad day (threshold fixed) works
    fixed = source_for("sortie")
    assert run_day(fixed, res, bad[0], instance=instance).success
    assert set(staged_day(res["lake"], "sortie", bad[0])) <= {
        i["item_id"] for i in catalog_items(res["catalog"], fixed.catalog_data_source)}


def test_small_days_with_a_few_invalid_rows_pass_and_a_really_bad_day_fails(
        warehouse_server, start_catalog, tmp_path):
    source = source_for("readiness")
    res = resources(warehouse_server, start_catalog(), tmp_path / "lake")
    result = run_range(source, res)
    assert result.success  # ~27 rows a day, 3 % invalid: noise, quarantined, not fatal
    warehouse: DatabricksWarehouse = res["warehouse"]
    day = dt.date.fromisoformat(DAYS[5])
    warehouse.query_arrow(  # a really bad day: every row of it invalid
        "UPDATE main.blade.blade_readiness_data SET status = 'BROKEN' "
        "WHERE CAST(last_modified AS DATE) = :day", {"day": day})
    try:
        instance = dg.DagsterInstance.ephemeral()
        again = run_range(source, res, instance=instance)
        assert not again.success
        [failed] = [e for e in again.get_asset_check_evaluations() if not e.passed]
        assert failed.check_name == "invalid_fraction"
        reasons = failed.metadata["failed_days"].value
        assert set(reasons) == {DAYS[5]} and "rows quarantined" in reasons[DAYS[5]]
        # exactly that day red in the catalog asset's partitions, every other day green
        partitions = daily_partitions(source)
        status = get_and_update_asset_status_cache_value(instance, catalog_key(source),
                                                         partitions)
        assert list(status.deserialize_failed_partition_subsets(partitions)
                    .get_partition_keys()) == [DAYS[5]]
        assert set(status.deserialize_materialized_partition_subsets(partitions)
                   .get_partition_keys()) == set(DAYS) - {DAYS[5]}
    finally:
        warehouse.query_arrow(
            "UPDATE main.blade.blade_readiness_data SET status = 'FMC' "
            "WHERE CAST(last_modified AS DATE) = :day AND status = 'BROKEN'", {"day": day})


@pytest.mark.slow
def test_the_cli_materializes_a_partition_range_in_one_run(warehouse_server, start_catalog,
                                                          tmp_path):
    """``dagster asset materialize --partition-range`` (refused by Dagster unless every
    selected asset has a single-run backfill policy) runs the range as one run."""
    catalog = start_catalog()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "BLADE_WAREHOUSE_URL": warehouse_url(warehouse_server),
           "DATABRICKS_TOKEN": WAREHOUSE_TOKEN, "BLADE_CATALOG_URL": catalog.base_url,
           "BLADE_CATALOG_TOKEN": CATALOG_TOKEN, "BLADE_LAKE_URI": str(tmp_path / "lake")}
    env.pop("DAGSTER_PG_URL", None)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
         "blade_pipeline.definitions", "--select",
         "blade/supply/staged,blade/supply/catalog", "--partition-range", f"{FIRST}...{LAST}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_materialized_partitions(catalog_key(source_for("supply"))) == set(DAYS)
    lake = ParquetLake(uri=str(tmp_path / "lake"))
    staged = {i for day in DAYS for i in staged_day(lake, "supply", day)}
    client = CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN)
    assert {i["item_id"] for i in catalog_items(client, "BLADE:supply")} == staged
