"""Change sensors (cursor round trips) and daily schedules, with a fake warehouse."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.definitions import defs
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.defs.sensors import SensorTickError, build_change_sensor, evaluate_changes
from blade_pipeline.sources.reader import SourceError


class FakeWarehouse(dg.ConfigurableResource):
    """Answers the sensor's two queries from an in-memory list of (last_modified) rows."""

    rows: list[str]

    def query_arrow(self, sql: str, params: dict | None = None) -> pa.Table:
        stamps = [dt.datetime.fromisoformat(r) for r in self.rows]
        if "GROUP BY" not in sql:
            return pa.table({"newest": pa.array([max(stamps) if stamps else None],
                                                pa.timestamp("us"))})
        newer = sorted(s for s in stamps if s > params["cursor"])
        days: dict[dt.date, list[dt.datetime]] = {}
        for stamp in newer:
            days.setdefault(stamp.date(), []).append(stamp)
        return pa.table({"day": pa.array(list(days), pa.date32()),
                         "newest": pa.array([max(v) for v in days.values()], pa.timestamp("us")),
                         "changed": pa.array([len(v) for v in days.values()], pa.int64())})


class DownWarehouse(dg.ConfigurableResource):
    """A warehouse that cannot be reached (what DatabricksWarehouse raises then)."""

    def query_arrow(self, sql: str, params: dict | None = None) -> pa.Table:
        raise SourceError("Databricks SQL warehouse http://127.0.0.1:9/sql/1.0/warehouses/x "
                             "is not reachable: Connection refused")


SENSOR = defs.get_sensor_def("blade_sortie_changes")


def tick(rows: list[str], cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor, resources={
        "warehouse": FakeWarehouse(rows=rows)}, definitions=defs)
    return SENSOR.evaluate_tick(context), context  # as the daemon evaluates it


def test_first_tick_only_records_the_watermark():
    result, _ = tick(["2026-05-01T10:00:00", "2026-05-02T11:00:00"], None)
    assert result.cursor == "2026-05-02T11:00:00.000000"
    assert not result.run_requests


def test_changed_days_are_requested_and_the_cursor_advances():
    rows = ["2026-05-01T10:00:00", "2026-05-02T11:00:00", "2026-05-02T12:30:00",
            "2026-05-04T09:15:00"]
    result, _ = tick(rows, "2026-05-01T23:00:00.000000")
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("2026-05-02", "2026-05-02:2026-05-02T12:30:00.000000"),
        ("2026-05-04", "2026-05-04:2026-05-04T09:15:00.000000")]
    assert result.cursor == "2026-05-04T09:15:00.000000"
    again, _ = tick(rows, result.cursor)  # round trip: nothing new, nothing requested
    assert not again.run_requests and "no rows changed" in again.skip_message


def requests_of(result) -> list[tuple]:
    """(partition_key, range start, range end, run_key, changed rows) of each request."""
    return [(r.partition_key, *(r.partition_key_range or (None, None)), r.run_key,
             r.tags["blade/changed_rows"]) for r in result.run_requests]


def test_contiguous_changed_days_are_one_range_run():
    rows = ["2026-05-02T11:00:00", "2026-05-02T12:30:00", "2026-05-03T08:00:00",
            "2026-05-04T09:15:00"]
    result, _ = tick(rows, "2026-05-01T23:00:00.000000")
    [request] = result.run_requests
    assert request.partition_key is None
    assert request.partition_key_range == dg.PartitionKeyRange("2026-05-02", "2026-05-04")
    assert request.run_key == "2026-05-02...2026-05-04:2026-05-04T09:15:00.000000"
    assert request.tags.items() >= {"blade/trigger": "change-sensor", "blade/changed_rows": "4",
                                    "dagster/asset_partition_range_start": "2026-05-02",
                                    "dagster/asset_partition_range_end": "2026-05-04"}.items()
    assert result.cursor == "2026-05-04T09:15:00.000000"


def test_a_gap_splits_the_range():
    rows = ["2026-05-02T11:00:00", "2026-05-03T08:00:00", "2026-05-03T09:00:00",
            "2026-05-05T09:15:00", "2026-05-06T01:00:00"]
    result, _ = tick(rows, "2026-05-01T23:00:00.000000")
    assert requests_of(result) == [
        (None, "2026-05-02", "2026-05-03", "2026-05-02...2026-05-03:2026-05-03T09:00:00.000000",
         "3"),
        (None, "2026-05-05", "2026-05-06", "2026-05-05...2026-05-06:2026-05-06T01:00:00.000000",
         "2")]


def test_max_partitions_per_run_caps_each_range():
    source = source_for("sortie").model_copy(update={"max_partitions_per_run": 2})
    rows = [f"2026-05-0{d}T0{d}:00:00" for d in range(1, 6)]
    result = evaluate_changes(source, FakeWarehouse(rows=rows), "2026-04-30T00:00:00.000000",
                              daily_partitions(source))
    assert requests_of(result) == [
        (None, "2026-05-01", "2026-05-02", "2026-05-01...2026-05-02:2026-05-02T02:00:00.000000",
         "2"),
        (None, "2026-05-03", "2026-05-04", "2026-05-03...2026-05-04:2026-05-04T04:00:00.000000",
         "2"),
        ("2026-05-05", None, None, "2026-05-05:2026-05-05T05:00:00.000000", "1")]
    assert result.cursor == "2026-05-05T05:00:00.000000"
    one = source.model_copy(update={"max_partitions_per_run": 1})  # a cap of 1: one per day
    result = evaluate_changes(one, FakeWarehouse(rows=rows), "2026-04-30T00:00:00.000000",
                              daily_partitions(one))
    assert [r.partition_key for r in result.run_requests] == [
        f"2026-05-0{d}" for d in range(1, 6)]


def test_a_single_day_keeps_the_single_partition_request():
    result, _ = tick(["2026-05-02T11:00:00", "2026-05-02T12:30:00"],
                     "2026-05-01T23:00:00.000000")
    [request] = result.run_requests
    assert request.partition_key == "2026-05-02"
    assert request.partition_key_range is None
    assert request.run_key == "2026-05-02:2026-05-02T12:30:00.000000"
    assert request.tags.items() >= {"blade/trigger": "change-sensor",
                                    "blade/changed_rows": "2"}.items()


def test_run_keys_are_deterministic_across_evaluations():
    rows = ["2026-05-02T11:00:00", "2026-05-03T08:00:00", "2026-05-05T09:15:00",
            "2026-05-06T01:00:00", "2026-05-07T02:00:00", "2026-05-09T03:00:00"]
    first, _ = tick(rows, "2026-05-01T23:00:00.000000")
    second, _ = tick(list(reversed(rows)), "2026-05-01T23:00:00.000000")  # a retried tick
    assert requests_of(first) == requests_of(second)
    assert [r.run_key for r in first.run_requests] == [
        "2026-05-02...2026-05-03:2026-05-03T08:00:00.000000",
        "2026-05-05...2026-05-07:2026-05-07T02:00:00.000000",
        "2026-05-09:2026-05-09T03:00:00.000000"]


def test_days_outside_the_partitions_break_ranges():
    # sortie partitions start on 2024-01-01; today's partition is the last (end_offset=1)
    today = dt.datetime.now(dt.UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    rows = ["2023-12-30T01:00:00", "2023-12-31T01:00:00", "2024-01-01T01:00:00",
            "2024-01-02T01:00:00", f"{today}T00:00:01", f"{tomorrow}T00:00:01"]
    result, _ = tick(rows, "2023-12-01T00:00:00.000000")
    assert requests_of(result) == [
        (None, "2024-01-01", "2024-01-02", "2024-01-01...2024-01-02:2024-01-02T01:00:00.000000",
         "2"),
        (today.isoformat(), None, None, f"{today}:{today}T00:00:01.000000", "1")]
    assert result.cursor == f"{tomorrow}T00:00:01.000000"  # skipped days still move it


def test_dagster_resolves_the_range_request_as_one_run_of_the_real_job():
    rows = ["2026-05-02T11:00:00", "2026-05-03T08:00:00", "2026-05-04T09:15:00"]
    context = dg.build_sensor_context(cursor="2026-05-01T23:00:00.000000", resources={
        "warehouse": FakeWarehouse(rows=rows)}, definitions=defs)
    [request] = SENSOR.evaluate_tick(context).run_requests  # Dagster's own resolution
    assert not request.requires_backfill_daemon()
    assert request.asset_graph_subset is None and request.job_name is None
    assert "dagster/partition" not in request.tags
    assert request.partition_key_range == dg.PartitionKeyRange("2026-05-02", "2026-05-04")
    job = defs.resolve_job_def("blade_sortie_job")
    assert SENSOR.job_name == job.name
    assert job.partitions_def.get_partition_keys_in_range(request.partition_key_range) == [
        "2026-05-02", "2026-05-03", "2026-05-04"]


def test_the_range_request_executes_as_one_single_run_over_the_range():
    """The requested run, executed: one run materializes every day of the range at once."""
    source = source_for("sortie")
    partitions = daily_partitions(source)
    seen: list[dg.PartitionKeyRange] = []

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def days(context: dg.AssetExecutionContext) -> None:
        seen.append(context.partition_key_range)

    job = dg.define_asset_job("tiny_days_job", selection=[days])
    sensor = build_change_sensor(source, job, partitions)
    warehouse = FakeWarehouse(rows=["2026-05-02T11:00:00", "2026-05-03T08:00:00",
                                    "2026-05-04T09:15:00", "2026-05-06T01:00:00"])
    tiny = dg.Definitions(assets=[days], jobs=[job], sensors=[sensor],
                          resources={"warehouse": warehouse})
    context = dg.build_sensor_context(cursor="2026-05-01T23:00:00.000000",
                                      resources={"warehouse": warehouse}, definitions=tiny)
    ranged, single = sensor.evaluate_tick(context).run_requests
    instance = dg.DagsterInstance.ephemeral()
    resolved = tiny.resolve_job_def("tiny_days_job")
    run = resolved.execute_in_process(tags=ranged.tags, instance=instance)
    assert run.success
    assert seen == [dg.PartitionKeyRange("2026-05-02", "2026-05-04")]
    assert sorted(e.partition for e in run.get_asset_materialization_events()) == [
        "2026-05-02", "2026-05-03", "2026-05-04"]
    assert run.dagster_run.tags["blade/changed_rows"] == "3"
    assert resolved.execute_in_process(partition_key=single.partition_key, tags=single.tags,
                                       instance=instance).success
    assert seen[-1] == dg.PartitionKeyRange("2026-05-06", "2026-05-06")
    assert instance.get_materialized_partitions(days.key) == {
        "2026-05-02", "2026-05-03", "2026-05-04", "2026-05-06"}


def test_days_outside_the_partitions_move_the_cursor_without_a_run():
    result, _ = tick(["2023-01-01T00:00:00"], "2022-12-31T00:00:00.000000")
    assert not result.run_requests and result.cursor == "2023-01-01T00:00:00.000000"


def test_an_unreachable_warehouse_fails_the_tick_and_the_next_tick_catches_up():
    cursor = "2026-05-01T00:00:00.000000"
    context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": DownWarehouse()},
                                      definitions=defs)
    with pytest.raises(SensorTickError) as caught:
        SENSOR.evaluate_tick(context)
    message = str(caught.value)
    assert message.startswith("[sortie] change sensor: cannot ask the warehouse")
    assert f"cursor stays at {cursor}" in message and "Connection refused" in message
    result, _ = tick(["2026-05-02T10:00:00"], cursor)  # reachable again: the change is seen
    [request] = result.run_requests
    assert request.partition_key == "2026-05-02"


def test_evaluate_changes_directly():
    source = source_for("supply")
    result = evaluate_changes(source, FakeWarehouse(rows=[]), None,
                              dg.DailyPartitionsDefinition("2024-01-01"))
    assert isinstance(result, dg.SkipReason)


def test_daily_schedule_targets_yesterday():
    schedule = defs.get_schedule_def("blade_readiness_daily")
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 7, 4, 1, 30, tzinfo=dt.UTC),
        repository_def=defs.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-07-03"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_disabled_sources_start_with_sensor_and_schedule_off():
    from blade_pipeline.defs.jobs import build_partition_job
    from blade_pipeline.defs.schedules import build_daily_schedule

    off = source_for("sortie").model_copy(update={"enabled": False})
    job = build_partition_job(off)
    assert build_change_sensor(off, job, daily_partitions(off)).default_status == \
        dg.DefaultSensorStatus.STOPPED
    assert build_daily_schedule(off, job).default_status == dg.DefaultScheduleStatus.STOPPED


def test_the_reconcile_schedule_checks_yesterday_after_the_nightly_run():
    schedule = defs.get_schedule_def("blade_supply_reconcile")
    assert schedule.cron_schedule == "0 4 * * *"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 7, 4, 4, 0, tzinfo=dt.UTC),
        repository_def=defs.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_config == {"ops": {"reconcile_supply": {"config": {"first": "2026-07-03"}}}}
    assert request.run_key == "reconcile:2026-07-03"


def test_automated_runs_queue_behind_backfills_on_both_instances(tmp_path):
    """Sensor and schedule runs carry a lower priority than backfills (Dagster's run queue
    starts higher ones first); both instance configs cap sensor runs and give a range run's
    worker time to start on a busy machine, and Dagster validates them."""
    from dagster._core.instance.config import dagster_instance_config

    from blade_pipeline.cli.demo import SQLITE_INSTANCE_YAML
    from blade_pipeline_tests.conftest import REPO_ROOT

    result, _ = tick(["2026-05-02T11:00:00", "2026-05-04T09:15:00"], "2026-05-01T23:00:00")
    schedule = defs.get_schedule_def("blade_readiness_daily")
    [daily] = schedule.evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 7, 4, 1, 30, tzinfo=dt.UTC),
        repository_def=defs.get_repository_def())).run_requests
    for request in [*result.run_requests, daily]:
        assert request.tags["dagster/priority"] == "-1"
    (tmp_path / "dagster.yaml").write_text(SQLITE_INSTANCE_YAML)
    for home in (tmp_path, REPO_ROOT):
        config, _ = dagster_instance_config(str(home))
        queue = config["run_coordinator"]["config"]
        assert {"key": "dagster/sensor_name", "limit": 2} in queue["tag_concurrency_limits"]
        assert config["run_monitoring"]["start_timeout_seconds"] >= 600
