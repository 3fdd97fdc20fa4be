"""The drained sensor of a push source: runs the days the drain has written batches into.

The drain numbers its commits and marks each day with the last commit that wrote into it
(``pushed/<source>/_committed.json``), so the sensor's cursor is the newest commit it has seen:
each tick reads that one file, takes the days marked past the cursor and requests them as
range runs of the source's job (contiguous days, at most ``max_partitions_per_run`` each;
``run_key`` = days + commit). A record pushed late with an old watermark, or a batch the log
delivered again after a crash, is found all the same: its commit is new. A day after today
(a producer's clock ahead) is not a partition yet: the daily schedule runs it once it is
yesterday.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.sensors import (
    MINIMUM_INTERVAL_SECONDS,
    SensorTickError,
    day_groups,
    range_request,
)
from blade_pipeline.sources.pushed_rows import PushedRows
from blade_pipeline.storage.lake import LakeError

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def evaluate_drained(source: BladeSource, pushed: PushedRows, cursor: str | None,
                     partitions: dg.PartitionsDefinition) -> dg.SensorResult | dg.SkipReason:
    """The sensor's logic, separate from its decorator so tests can call it directly."""
    seen = int(cursor or 0)
    committed = pushed.committed(source.name)
    newest = max(committed.commit, seen)
    days = [{"day": dt.date.fromisoformat(day)} for day, commit in committed.days.items()
            if commit > seen]
    if not days:
        return dg.SkipReason(f"{source.data_type}: nothing drained after commit {seen}")
    groups = day_groups(days, set(partitions.get_partition_keys()),
                        source.max_partitions_per_run)
    requests = [range_request(g[0]["day"].isoformat(), g[-1]["day"].isoformat(),
                              f"commit{newest}", {"blade/trigger": "drained-sensor"})
                for g in groups]
    return dg.SensorResult(run_requests=requests, cursor=str(newest))


def build_drained_sensor(source: BladeSource, job: UnresolvedAssetJobDefinition,
                         partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """The drained sensor of one push source; on by default when the source is enabled."""

    @dg.sensor(
        name=f"blade_{source.data_type}_drained", job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=(dg.DefaultSensorStatus.RUNNING if source.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Runs the {source.display_name} days the ingest server's drain wrote "
                    "pushed batches into (commits past the cursor).",
        required_resource_keys={source.resource_key},
    )
    def drained(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        pushed: PushedRows = getattr(context.resources, source.resource_key)
        try:
            return evaluate_drained(source, pushed, context.cursor, partitions)
        except LakeError as exc:
            raise SensorTickError(f"[{source.data_type}] drained sensor: cannot list the "
                                  f"drained days (the cursor stays at commit "
                                  f"{context.cursor or 0}; "
                                  f"the next tick retries): {exc}") from None

    return drained
