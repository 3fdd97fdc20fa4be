"""Change sensors: one per data type, requesting runs for the days whose rows changed.

Each tick asks the warehouse for rows whose watermark is past the cursor, grouped by day, and
requests runs over the affected days that are partitions of the job (days outside them, before
``partition_start`` or in the future, are skipped and break a group):

* contiguous changed days (consecutive calendar days, all partitions, all changed in this tick)
  become one run over the partition range ``[first, last]``, split into runs of at most
  ``source.max_partitions_per_run`` days when the source sets it (None: no cap). A range run is
  a request with Dagster's ``dagster/asset_partition_range_start`` / ``_end`` tags, so it is one
  ordinary run (not a backfill); ``run_key`` = ``first...last`` + the group's newest watermark;
* a lone day is a single-partition run, ``run_key`` = day + its newest watermark.

Run keys are deterministic, so a tick that is retried never launches the same run twice; each
run carries the changed-row count of its days in ``blade/changed_rows``. The cursor moves to the
newest watermark seen. It lives in Dagster's storage, so restarts resume where they left off.
A sensor's first tick only records the current watermark: history is a backfill, not a sensor's
job.

A warehouse that cannot be reached or refuses the token fails the tick (``SensorTickError``,
shown as a failed tick in the UI, naming the data type and the warehouse; never the token): a
quiet skip would hide an outage. The cursor stays where it was, so the next tick that reaches
the warehouse picks up every change made meanwhile, and its success clears the failure.
"""

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from blade_pipeline.config.settings import BladeSettings
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import SourceError, SourceReader

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

#: Seconds between ticks; BLADE_SENSOR_INTERVAL_SECONDS overrides (tests, demos).
MINIMUM_INTERVAL_SECONDS = BladeSettings().sensor_interval_seconds


class SensorTickError(Exception):
    """A change sensor's tick could not ask the warehouse; names the data type and why."""


def _fmt(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _run_request(days: list[dict]) -> dg.RunRequest:
    """One run over contiguous changed days (warehouse rows: day, newest, changed)."""
    first, last = days[0]["day"].isoformat(), days[-1]["day"].isoformat()
    newest = _fmt(max(d["newest"] for d in days))
    tags = {"blade/trigger": "change-sensor",
            "blade/changed_rows": str(sum(d["changed"] for d in days))}
    return range_request(first, last, newest, tags)


#: Runs that sensors and schedules request queue behind backfills and runs launched by hand
#: (Dagster's run queue starts higher priorities first; the instance's dagster.yaml also caps
#: how many sensor runs run at once), so a history load is never starved by fresh changes.
AUTOMATED_RUN_TAGS = {"dagster/priority": "-1"}


def range_request(first: str, last: str, key: str, tags: dict[str, str],
                  job_name: str | None = None) -> dg.RunRequest:
    """A run over the days ``first``..``last``: one partition, or a range run;
    ``run_key`` = the days + ``key``."""
    if first == last:
        return dg.RunRequest(partition_key=first, run_key=f"{first}:{key}",
                             tags={**AUTOMATED_RUN_TAGS, **tags},
                             job_name=job_name)
    # RunRequest (1.13) has no partition-range argument: a range run is the range tags
    # (RunRequest.partition_key_range reads them back; the run's partitions come from them).
    return dg.RunRequest(run_key=f"{first}...{last}:{key}", job_name=job_name, tags={
        **AUTOMATED_RUN_TAGS, **tags, ASSET_PARTITION_RANGE_START_TAG: first,
        ASSET_PARTITION_RANGE_END_TAG: last})


def evaluate_changes(source: BladeSource, warehouse: SourceReader, cursor: str | None,
                     partitions: dg.PartitionsDefinition) -> dg.SensorResult | dg.SkipReason:
    """The sensor's logic, separate from its decorator so tests can call it directly."""
    if cursor is None:
        newest = warehouse.query_arrow(
            source_sql.newest_watermark(source)).column("newest")[0].as_py()
        if newest is None:
            return dg.SkipReason(f"{source.data_type}: the table is empty")
        return dg.SensorResult(cursor=_fmt(newest), skip_reason=dg.SkipReason(
            f"{source.data_type}: starting to watch after {_fmt(newest)}; earlier days are "
            "ingested by backfills or the daily schedule"))
    changes = warehouse.query_arrow(source_sql.changed_days(source),
                                    {"cursor": dt.datetime.fromisoformat(cursor)})
    if changes.num_rows == 0:
        return dg.SkipReason(f"{source.data_type}: no rows changed after {cursor}")
    rows = changes.to_pylist()
    newest_requested = max([dt.datetime.fromisoformat(cursor), *(r["newest"] for r in rows)])
    groups = day_groups(rows, set(partitions.get_partition_keys()),
                        source.max_partitions_per_run)
    requests = [_run_request(group) for group in groups]
    return dg.SensorResult(run_requests=requests, cursor=_fmt(newest_requested))


def day_groups(rows: list[dict], keys: set[str], cap: int | None) -> list[list[dict]]:
    """``rows`` (each with a ``day``) in runs to request: consecutive days that are partition
    keys (others, before ``partition_start`` or in the future, are left out), at most ``cap``
    days per run."""
    groups: list[list[dict]] = []
    previous: dt.date | None = None  # the last day that is a partition
    for row in sorted(rows, key=lambda r: r["day"]):
        day = row["day"]
        if day.isoformat() not in keys:
            continue
        if (previous is not None and day - previous == dt.timedelta(days=1)
                and (cap is None or len(groups[-1]) < cap)):
            groups[-1].append(row)
        else:
            groups.append([row])
        previous = day
    return groups


def build_change_sensor(source: BladeSource, job: "UnresolvedAssetJobDefinition",
                        partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """The change sensor of one source; on by default when the source is enabled."""

    @dg.sensor(
        name=f"blade_{source.data_type}_changes", job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=(dg.DefaultSensorStatus.RUNNING if source.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Runs {source.display_name} partitions whose rows changed in "
                    f"{source.table_label} (watermark `{source.watermark_column}` past the "
                    "cursor).",
        required_resource_keys={source.resource_key},
    )
    def change_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        warehouse: SourceReader = getattr(context.resources, source.resource_key)
        try:
            return evaluate_changes(source, warehouse, context.cursor, partitions)
        except SourceError as exc:
            raise SensorTickError(
                f"[{source.data_type}] change sensor: cannot ask the warehouse for changes "
                f"(the cursor stays at {context.cursor or 'its first watermark'}; the next tick "
                f"retries): {exc}") from None

    return change_sensor
