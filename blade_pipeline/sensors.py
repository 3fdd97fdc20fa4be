"""Change sensors: one per data type, requesting runs for the days whose rows changed.

Each tick asks the warehouse for rows whose watermark is past the cursor, grouped by day;
every affected day gets a run request (``run_key`` = day + newest watermark, so a tick that
is retried never launches the same run twice) and the cursor moves to the newest watermark
requested. The cursor lives in Dagster's storage, so restarts resume where they left off.
A sensor's first tick only records the current watermark: history is a backfill, not a sensor's
job.
"""

import datetime as dt
import os
from typing import TYPE_CHECKING

import dagster as dg

from blade_pipeline.resources.warehouse import DatabricksWarehouse, WarehouseError
from blade_pipeline.sources import BladeSource

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

#: Seconds between ticks; BLADE_SENSOR_INTERVAL_SECONDS overrides (tests, demos).
MINIMUM_INTERVAL_SECONDS = int(os.environ.get("BLADE_SENSOR_INTERVAL_SECONDS", "30"))


def changes_sql(source: BladeSource) -> str:
    """Days with rows newer than :cursor, with the newest watermark and row count per day."""
    wm = f"`{source.watermark_column}`"
    return (f"SELECT CAST({wm} AS DATE) AS day, max({wm}) AS newest, count(*) AS changed "
            f"FROM {source.warehouse.qualified_name} WHERE {wm} > :cursor "
            "GROUP BY 1 ORDER BY 1")


def newest_sql(source: BladeSource) -> str:
    return f"SELECT max(`{source.watermark_column}`) AS newest FROM " \
           f"{source.warehouse.qualified_name}"


def _fmt(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def evaluate_changes(source: BladeSource, warehouse: DatabricksWarehouse, cursor: str | None,
                     partitions: dg.PartitionsDefinition) -> dg.SensorResult | dg.SkipReason:
    """The sensor's logic, separate from its decorator so tests can call it directly."""
    if cursor is None:
        newest = warehouse.query_arrow(newest_sql(source)).column("newest")[0].as_py()
        if newest is None:
            return dg.SkipReason(f"{source.data_type}: the table is empty")
        return dg.SensorResult(cursor=_fmt(newest), skip_reason=dg.SkipReason(
            f"{source.data_type}: starting to watch after {_fmt(newest)}; earlier days are "
            "ingested by backfills or the daily schedule"))
    changes = warehouse.query_arrow(changes_sql(source),
                                    {"cursor": dt.datetime.fromisoformat(cursor)})
    if changes.num_rows == 0:
        return dg.SkipReason(f"{source.data_type}: no rows changed after {cursor}")
    valid_days = set(partitions.get_partition_keys())
    requests, newest_requested = [], dt.datetime.fromisoformat(cursor)
    for row in changes.to_pylist():
        day = row["day"].isoformat()
        newest_requested = max(newest_requested, row["newest"])
        if day not in valid_days:
            continue  # outside the partitioned range (before partition_start or future)
        requests.append(dg.RunRequest(
            partition_key=day, run_key=f"{day}:{_fmt(row['newest'])}",
            tags={"blade/trigger": "change-sensor", "blade/changed_rows": str(row["changed"])}))
    return dg.SensorResult(run_requests=requests, cursor=_fmt(newest_requested))


def build_change_sensor(source: BladeSource, job: "UnresolvedAssetJobDefinition",
                        partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """The change sensor of one source; on by default when the source is enabled."""

    @dg.sensor(
        name=f"blade_{source.data_type}_changes", job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=(dg.DefaultSensorStatus.RUNNING if source.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Runs {source.display_name} partitions whose rows changed in the "
                    f"warehouse (watermark `{source.watermark_column}` past the cursor).",
    )
    def change_sensor(context: dg.SensorEvaluationContext,
                      warehouse: DatabricksWarehouse) -> dg.SensorResult | dg.SkipReason:
        try:
            return evaluate_changes(source, warehouse, context.cursor, partitions)
        except WarehouseError as exc:
            return dg.SkipReason(f"{source.data_type}: warehouse not reachable this tick: {exc}")

    return change_sensor
