"""Freshness: a day is due in the lake and in the catalog by a time of the next day.

Each source sets ``due_by`` (UTC, default 03:00): day D is late when, at D+1 ``due_by``, the
staged asset or the catalog asset has no materialization of partition D. The check
``freshness`` on both assets says so (staged: WARN, catalog: ERROR — the catalog is what the
pipeline promises), with the day and how overdue it is in metadata.

Why not Dagster's ``build_time_partition_freshness_checks``: it expects the *last* partition
by the deadline, and our partitions end a day ahead (``end_offset=1``: the change sensor runs
today's rows), so it would demand today's partition at 03:00. Why not the new
``FreshnessPolicy`` (1.13, preview): it judges the newest materialization of *any* partition,
so a backfill of an old day would make a late yesterday look fresh. The check writes the
metadata keys of Dagster's freshness checks, so Dagster's ``build_sensor_for_freshness_checks``
evaluates it when it can next go stale; a run that materializes the asset evaluates it too
(the check is in the source's job), which is how a failed check clears.
"""


import datetime as dt
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_factories.utils import (
    FRESH_UNTIL_METADATA_KEY,
    LAST_UPDATED_TIMESTAMP_METADATA_KEY,
    LATEST_CRON_TICK_METADATA_KEY,
)
from dagster._time import get_current_datetime

from blade_pipeline.config.settings import BladeSettings
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.keys import catalog_key, staged_key

CHECK_NAME = "freshness"
SENSOR_NAME = "blade_freshness_checks"
OVERDUE_SECONDS = "dagster/overdue_seconds"  # what Dagster's own freshness checks wrote


def deadline_cron(source: BladeSource) -> str:
    """The cron of a source's daily deadline (UTC)."""
    return f"{source.due_by.minute} {source.due_by.hour} * * *"


def latest_deadline(source: BladeSource, now: dt.datetime) -> dt.datetime:
    """The most recent deadline at or before ``now`` (UTC)."""
    today = dt.datetime.combine(now.astimezone(dt.UTC).date(), source.due_by, tzinfo=dt.UTC)
    return today if today <= now else today - dt.timedelta(days=1)


def due_day(source: BladeSource, now: dt.datetime) -> dt.date:
    """The newest day that must be in by ``now``: the day before the latest deadline."""
    return latest_deadline(source, now).date() - dt.timedelta(days=1)


def _evaluate(instance: dg.DagsterInstance, source: BladeSource, key: dg.AssetKey,
              now: dt.datetime) -> dg.AssetCheckResult:
    deadline = latest_deadline(source, now)
    day = due_day(source, now).isoformat()
    metadata: dict[str, dg.MetadataValue] = {
        "day": dg.MetadataValue.text(day), "due_by": dg.MetadataValue.text(
            f"{deadline.isoformat(timespec='minutes')}"),
        LATEST_CRON_TICK_METADATA_KEY: dg.MetadataValue.timestamp(deadline.timestamp())}
    fresh_until = {FRESH_UNTIL_METADATA_KEY: dg.MetadataValue.timestamp(
        (deadline + dt.timedelta(days=1)).timestamp())}  # passing, it holds until the next one
    if day < source.partition_start.isoformat():
        return dg.AssetCheckResult(
            asset_key=key, check_name=CHECK_NAME, passed=True,
            metadata={**metadata, **fresh_until},
            description=f"nothing due yet: {day} is before partition_start")
    done = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1).records
    severity = (dg.AssetCheckSeverity.ERROR if key == catalog_key(source)
                else dg.AssetCheckSeverity.WARN)
    if done:
        return dg.AssetCheckResult(
            asset_key=key, check_name=CHECK_NAME, passed=True, severity=severity,
            metadata={**metadata, **fresh_until},
            description=f"{day} arrived before its deadline passed or since")
    newest = instance.get_latest_materialization_event(key)
    if newest is not None:
        metadata[LAST_UPDATED_TIMESTAMP_METADATA_KEY] = dg.MetadataValue.timestamp(
            newest.timestamp)
    overdue = float(round((now - deadline).total_seconds()))
    metadata[OVERDUE_SECONDS] = dg.MetadataValue.float(overdue)
    where = "staged in the lake" if key == staged_key(source) else "uploaded to the catalog"
    return dg.AssetCheckResult(
        asset_key=key, check_name=CHECK_NAME, passed=False, severity=severity,
        metadata=metadata,
        description=f"[{source.data_type}] {day} is late: not {where} by "
                    f"{deadline.isoformat(timespec='minutes')} (due_by "
                    f"{source.due_by.strftime('%H:%M')} UTC); run the day, or look at why its "
                    "nightly run did not succeed")


def build_freshness_check(source: BladeSource) -> dg.AssetChecksDefinition:
    """``freshness`` on the staged and the catalog asset of one source."""
    due = source.due_by.strftime("%H:%M")
    specs = [dg.AssetCheckSpec(
        CHECK_NAME, asset=key, description=f"Day D is {what} by D+1 {due} UTC "
                                           "(sources.yaml due_by).")
        for key, what in ((staged_key(source), "staged"), (catalog_key(source), "in the catalog"))]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=f"{source.data_type}_freshness")
    def freshness(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = get_current_datetime()  # Dagster's clock, as its freshness sensor reads it
        for check_key in context.selected_asset_check_keys:
            yield _evaluate(context.instance, source, check_key.asset_key, now)

    return freshness


def build_freshness_sensor(checks: Sequence[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    """Dagster's freshness sensor over our checks: evaluates each when it can go stale."""
    return dg.build_sensor_for_freshness_checks(
        freshness_checks=checks, name=SENSOR_NAME, default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=BladeSettings().sensor_interval_seconds)
