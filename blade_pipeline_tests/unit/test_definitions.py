"""Every definition loads and every expected asset, check and partitioning is present."""

import dagster as dg

from blade_pipeline.config.sources import default_sources
from blade_pipeline.definitions import defs


def test_every_source_has_its_assets_checks_and_daily_partitions():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for source in default_sources():
        staged, catalog = f"blade/{source.data_type}/staged", f"blade/{source.data_type}/catalog"
        assert {staged, catalog} <= keys
        assert {(staged, "schema_conforms"), (staged, "invalid_fraction"),
                (staged, "schema_changed"),
                (catalog, "reconciled"), (staged, "freshness"), (catalog, "freshness")} <= checks
        assert defs.get_job_def(f"blade_{source.data_type}_reconcile_job")
        assert defs.get_schedule_def(f"blade_{source.data_type}_reconcile")
        for key in (staged, catalog):
            partitions = graph.get(dg.AssetKey.from_user_string(key)).partitions_def
            assert isinstance(partitions, dg.DailyPartitionsDefinition)
            assert partitions.start.date() == source.partition_start
        assert graph.get(dg.AssetKey.from_user_string(catalog)).parent_keys == {
            dg.AssetKey.from_user_string(staged)}
    for check_key in graph.asset_check_keys:  # the staged asset's checks block its upload
        assert graph.get_check_spec(check_key).blocking == (
            check_key.name not in {"reconciled", "freshness"})
    assert {"blade_failure_alerts", "blade_health_alerts", "blade_freshness_checks"} <= {
        s.name for s in defs.sensors}


def test_a_csv_source_lands_files_and_has_no_change_sensor():
    graph = defs.resolve_asset_graph()
    [csv] = [s for s in default_sources() if s.kind == "csv"]
    landed = graph.get(dg.AssetKey(["blade", csv.data_type, "landed"]))
    assert isinstance(landed.partitions_def, dg.DynamicPartitionsDefinition)
    assert landed.key in graph.get(dg.AssetKey(["blade", csv.data_type, "staged"])).parent_keys
    names = {s.name for s in defs.sensors}
    assert f"blade_{csv.data_type}_landing" in names
    assert f"blade_{csv.data_type}_changes" not in names
    assert f"blade_{csv.data_type}_daily" not in {s.name for s in defs.schedules}
    assert defs.get_job_def(f"blade_{csv.data_type}_landing_job")


def test_resources_are_wired_for_every_asset():
    assert set(defs.resources) == {"warehouse", "catalog", "lake", "alerts", "postgres", "csv",
                                  "pushed"}
    defs.resolve_all_job_defs()  # raises if any asset needs a missing resource
