"""Change sensors (cursor round trips) and daily schedules, with a fake warehouse."""

import datetime as dt

import dagster as dg
import pyarrow as pa

from blade_pipeline.definitions import defs
from blade_pipeline.sensors import evaluate_changes
from blade_pipeline.sources import source_for


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


SENSOR = defs.get_sensor_def("blade_sortie_changes")


def tick(rows: list[str], cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor, resources={
        "warehouse": FakeWarehouse(rows=rows)}, definitions=defs)
    return SENSOR(context), context


def test_first_tick_only_records_the_watermark():
    result, _ = tick(["2026-05-01T10:00:00", "2026-05-02T11:00:00"], None)
    assert result.cursor == "2026-05-02T11:00:00.000000"
    assert not result.run_requests


def test_changed_days_are_requested_and_the_cursor_advances():
    rows = ["2026-05-01T10:00:00", "2026-05-02T11:00:00", "2026-05-02T12:30:00",
            "2026-05-03T09:15:00"]
    result, _ = tick(rows, "2026-05-01T23:00:00.000000")
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("2026-05-02", "2026-05-02:2026-05-02T12:30:00.000000"),
        ("2026-05-03", "2026-05-03:2026-05-03T09:15:00.000000")]
    assert result.cursor == "2026-05-03T09:15:00.000000"
    again, _ = tick(rows, result.cursor)  # round trip: nothing new, nothing requested
    assert isinstance(again, dg.SkipReason)


def test_days_outside_the_partitions_move_the_cursor_without_a_run():
    result, _ = tick(["2023-01-01T00:00:00"], "2022-12-31T00:00:00.000000")
    assert not result.run_requests and result.cursor == "2023-01-01T00:00:00.000000"


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
    from blade_pipeline.jobs import build_partition_job
    from blade_pipeline.partitions import daily_partitions
    from blade_pipeline.schedules import build_daily_schedule
    from blade_pipeline.sensors import build_change_sensor

    off = source_for("sortie").model_copy(update={"enabled": False})
    job = build_partition_job(off)
    assert build_change_sensor(off, job, daily_partitions(off)).default_status == \
        dg.DefaultSensorStatus.STOPPED
    assert build_daily_schedule(off, job).default_status == dg.DefaultScheduleStatus.STOPPED
