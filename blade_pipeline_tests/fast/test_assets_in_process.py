"""Every data type's staged and catalog assets and their checks, materialized in-process."""

from __future__ import annotations

import sqlite3

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import default_sources, source_for
from blade_pipeline.definitions import defs
from blade_pipeline.defs.assets import build_blade_assets, catalog_key, staged_key
from blade_pipeline.defs.jobs import build_reconcile_job
from blade_pipeline.defs.reconciliation_check import build_reconciliation_check
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.steps.reconciliation import digest
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.expectations import catalog_items, expected_ids, materialization
from blade_pipeline_tests.fast.conftest import DAY, END_DATE, warehouse_at
from blade_pipeline_tests.faults.conftest import range_tags
from blade_pipeline_tests.in_process import InProcessCatalog

#: the Databricks sources (the in-process warehouse); the other kinds: faults cases 13-15
SOURCES = [s for s in default_sources() if s.kind == "databricks"]


def run(source, resources, selection=None, **partition):
    return dg.materialize(build_blade_assets(source), resources=resources, selection=selection,
                          raise_on_error=False, **(partition or {"partition_key": DAY}))


def check_results(result) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.data_type)
def test_a_day_of_every_data_type_reaches_the_catalog_exactly(source, resources, reference):
    result = run(source, resources)
    assert result.success
    assert check_results(result) == {"schema_conforms": True, "invalid_fraction": True,
                                    "schema_changed": True}
    staged = materialization(result, staged_key(source))
    expected = expected_ids(reference, source.data_type, DAY)
    assert staged["rows_valid"] == len(expected) > 20
    assert staged["rows_quarantined"] > 0
    uploaded = materialization(result, catalog_key(source))
    assert uploaded["created"] == len(expected) and uploaded["rejected"] == 0
    held = {i["item_id"] for i in catalog_items(resources["catalog"],
                                                source.catalog_data_source)}
    assert held == expected
    again = run(source, resources)  # idempotent: a re-run sends nothing
    assert materialization(again, catalog_key(source))["unchanged"] == len(expected)


def test_refused_items_of_a_range_are_kept_per_day_with_the_reason(resources, tmp_path):
    source = source_for("supply")
    days = [(END_DATE.fromordinal(END_DATE.toordinal() - n)).isoformat() for n in (3, 2, 1)]
    resources["catalog"] = InProcessCatalog(db_path=str(tmp_path / "refusing.sqlite3"),
                                            reject_ids="[05]$", batch_size=40)
    result = run(source, resources, tags=range_tags(days))
    assert result.success
    lake: ParquetLake = resources["lake"]
    kept_ids: set[str] = set()
    matching: set[str] = set()
    for day in days:  # batches of 40 span days: each day's refused rows are under that day
        files = lake.list_files(lake.rejected_dir(lake.partition_dir("supply", day)))
        kept = pa.concat_tables(pq.read_table(f) for f in files)
        ids = set(kept.column("item_id").to_pylist())
        staged = pq.read_table(lake.partition_dir("supply", day) + "/part-0.parquet")
        of_day = {i for i in staged.column("item_id").to_pylist() if i[-1] in "05"}
        assert ids and ids <= of_day and not ids & kept_ids
        assert set(kept.column("_reason").to_pylist()) == {
            "item_id: refused by this catalog's policy (matches '[05]$')"}
        kept_ids |= ids
        matching |= of_day
    assert kept_ids == matching  # every refused item kept once, under its newest day
    resources["catalog"].close()


def test_a_range_of_days_is_one_run_and_every_day_is_exact(resources, reference):
    source = source_for("sortie")
    days = [(END_DATE.fromordinal(END_DATE.toordinal() - n)).isoformat() for n in (4, 3, 2)]
    result = run(source, resources, tags=range_tags(days))
    assert result.success
    evaluations = [e.event_specific_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    # one evaluation per check over the range, not one per check and day
    assert sorted((e.partition, e.check_name, e.passed) for e in evaluations) == [
        (None, c, True) for c in ("invalid_fraction", "schema_changed", "schema_conforms")]
    assert {e.metadata["days_checked"].value for e in evaluations} == {3}
    held = {i["item_id"] for i in catalog_items(resources["catalog"],
                                                source.catalog_data_source)}
    assert held == set().union(*(expected_ids(reference, "sortie", d) for d in days))


def test_a_failed_blocking_check_keeps_the_day_out_of_the_catalog(resources):
    strict = source_for("maintenance").model_copy(
        update={"max_invalid_fraction": 0.0, "invalid_rows_allowed": 0})
    result = run(strict, resources)
    assert not result.success
    assert check_results(result)["invalid_fraction"] is False
    assert resources["catalog"].stats()["total"] == 0


def test_the_definitions_resolve_with_the_in_process_resources(resources):
    job = defs.resolve_job_def("blade_supply_job")
    result = job.execute_in_process(partition_key=DAY, resources=resources,
                                    raise_on_error=False)
    assert result.success
    assert resources["catalog"].stats()["data_sources"]["BLADE:supply"] > 20


def test_the_catalog_step_opens_each_staged_file_once(resources, monkeypatch):
    source = source_for("supply")
    days = ["2026-06-22", "2026-06-23", "2026-06-24"]
    assert run(source, resources, tags=range_tags(days), selection=[staged_key(source)]).success
    opened: list[str] = []
    real = ParquetLake.parquet_file

    def counting(self, directory):
        opened.append(directory)
        return real(self, directory)

    monkeypatch.setattr(ParquetLake, "parquet_file", counting)
    result = run(source, resources, tags=range_tags(days), selection=[catalog_key(source)])
    assert result.success
    lake = resources["lake"]
    assert sorted(opened) == sorted(lake.partition_dir("supply", d) for d in days)


def reconcile_alone(source, resources):
    """The source's reconcile job (the check alone) for DAY, as the nightly schedule runs it."""
    definitions = dg.Definitions(assets=build_blade_assets(source),
                                 asset_checks=[build_reconciliation_check(source)],
                                 jobs=[build_reconcile_job(source)], resources=resources)
    job = definitions.get_job_def(f"blade_{source.data_type}_reconcile_job")
    return job.execute_in_process(run_config={"ops": {
        f"reconcile_{source.data_type}": {"config": {"first": DAY}}}})


def reconciled_evaluations(result) -> list:
    return [e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.check_name == "reconciled"]


def test_reconciliation_finds_an_item_deleted_behind_the_pipelines_back_and_a_rerun_repairs(
        resources, tmp_path):
    source = source_for("maintenance")
    definitions = [*build_blade_assets(source), build_reconciliation_check(source)]
    first = dg.materialize(definitions, resources=resources, partition_key=DAY)
    [good] = reconciled_evaluations(first)
    assert good.passed, good.description
    numbers = {k: v.value for k, v in good.metadata.items()}
    assert numbers["warehouse_rows"] == numbers["staged_valid"] + numbers["quarantined"]
    assert numbers["missing_or_different"] == 0
    assert numbers["staged_digest"] == numbers["catalog_digest"]

    lake: ParquetLake = resources["lake"]
    staged = pq.read_table(lake.partition_dir("maintenance", DAY) + "/part-0.parquet")
    victim = staged.column("item_id")[3].as_py()
    with sqlite3.connect(resources["catalog"].db_path) as db:  # behind the pipeline's back
        assert db.execute("DELETE FROM items WHERE item_id = ?", (victim,)).rowcount == 1
    [bad] = reconciled_evaluations(reconcile_alone(source, resources))
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert f"1 of {numbers['staged_valid']} staged items are missing" in bad.description
    assert victim in bad.description and "re-run the day" in bad.description
    assert bad.metadata["staged_digest"].value != bad.metadata["catalog_digest"].value

    repaired = dg.materialize(definitions, resources=resources, partition_key=DAY)
    assert materialization(repaired, catalog_key(source))["created"] == 1
    [fixed] = reconciled_evaluations(repaired)
    assert fixed.passed, fixed.description


def test_reconciliation_warns_when_the_warehouse_moved_rows_after_staging(resources):
    source = source_for("readiness")
    definitions = [*build_blade_assets(source), build_reconciliation_check(source)]
    assert dg.materialize(definitions, resources=resources, partition_key=DAY).success

    class Grown(type(resources["warehouse"])):  # the warehouse now holds 2 more rows that day
        def query_arrow(self, sql, params=None):
            table = super().query_arrow(sql, params)
            if "count(*) AS rows" in sql:
                table = table.set_column(1, "rows", pc.add(table.column("rows"), 2))
            return table

    grown = {**resources, "warehouse": Grown(**resources["warehouse"].model_dump())}
    [warned] = reconciled_evaluations(reconcile_alone(source, grown))
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert "the warehouse changed since, re-run the day" in warned.description


def test_the_digest_does_not_depend_on_order():
    hashes = pa.array(["0f" * 32, "a1" * 32, "ff" * 32])
    assert digest(hashes) == digest(hashes.take([2, 0, 1])) != digest(hashes.slice(1))
    assert digest(pa.array([], pa.string())) == "0" * 16


def test_a_databricks_timestamp_watermark_gives_the_same_items_as_timestamp_ntz(
        resources, warehouse, tmp_path):
    """Databricks' default ``TIMESTAMP`` arrives time-zoned (UTC), ``TIMESTAMP_NTZ`` naive: a
    source's items, checks and content hashes must not depend on which its table uses."""
    source = source_for("maintenance")
    zoned = warehouse_at(tmp_path / "zoned.duckdb")
    zoned.query_arrow(f"ALTER TABLE {source_sql.table(source)} ALTER COLUMN "
                      "last_modified TYPE TIMESTAMP")  # Databricks SQL: time-zoned
    [field] = [f for f in zoned.query_arrow(
        f"SELECT last_modified FROM {source_sql.table(source)} LIMIT 1").schema]
    assert field.type.tz is not None
    staged = {}
    for name, res in (("ntz", resources), ("zoned", {**resources, "warehouse": zoned,
                                                     "lake": ParquetLake(uri=str(tmp_path))})):
        result = run(source, res)
        assert result.success, name
        lake = res["lake"]
        table = lake.parquet_file(lake.partition_dir(source.data_type, DAY)).read(
            columns=["item_id", "content_hash"])
        staged[name] = dict(zip(table.column("item_id").to_pylist(),
                                table.column("content_hash").to_pylist(), strict=True))
    assert staged["zoned"] == staged["ntz"] and len(staged["ntz"]) > 20
    zoned.close()
