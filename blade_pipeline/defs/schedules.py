"""Daily schedules: one per data type, running yesterday's partition as a safety net."""

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.sensors import AUTOMATED_RUN_TAGS

CRON = "30 1 * * *"  # 01:30 UTC, after the day has closed
RECONCILE_CRON = "0 4 * * *"  # 04:00 UTC, after the nightly run had time to finish

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def build_daily_schedule(source: BladeSource,
                         job: "UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    """Yesterday's partition every night; on by default when the source is enabled."""

    @dg.schedule(
        name=f"blade_{source.data_type}_daily", job=job, cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=(dg.DefaultScheduleStatus.RUNNING if source.enabled
                        else dg.DefaultScheduleStatus.STOPPED),
        description=f"Re-ingests yesterday's {source.display_name} partition every night (a "
                    "safety net behind the change sensor; unchanged items are not re-uploaded).",
    )
    def daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = (context.scheduled_execution_time.astimezone(dt.UTC).date()
               - dt.timedelta(days=1)).isoformat()
        return dg.RunRequest(partition_key=day, run_key=f"daily:{day}",
                             tags={**AUTOMATED_RUN_TAGS, "blade/trigger": "daily-schedule"})

    return daily


def build_reconcile_schedule(source: BladeSource, job: dg.JobDefinition
                             ) -> dg.ScheduleDefinition:
    """Yesterday's reconciliation every night (catches what changed behind the pipeline's
    back after the upload: an item deleted from the catalog, rows moved in the warehouse)."""

    @dg.schedule(
        name=f"blade_{source.data_type}_reconcile", job=job, cron_schedule=RECONCILE_CRON,
        execution_timezone="UTC",
        default_status=(dg.DefaultScheduleStatus.RUNNING if source.enabled
                        else dg.DefaultScheduleStatus.STOPPED),
        description=f"Reconciles yesterday's {source.display_name} partition every night.",
    )
    def reconcile(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = (context.scheduled_execution_time.astimezone(dt.UTC).date()
               - dt.timedelta(days=1)).isoformat()
        return dg.RunRequest(run_key=f"reconcile:{day}", tags={
            **AUTOMATED_RUN_TAGS, "blade/trigger": "reconcile-schedule"}, run_config={
            "ops": {f"reconcile_{source.data_type}": {"config": {"first": day}}}})

    return reconcile
