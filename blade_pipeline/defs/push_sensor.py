"""The drained sensor of a push source: runs the days the drain has written batches into.

The drain numbers its commits and marks each day with the last commit that wrote into it
(``pushed/<source>/_committed.json``), so the sensor's cursor is the newest commit it has seen:
each tick reads that one file, takes the days marked past the cursor and requests them as
range runs of the source's job (contiguous days, at most ``max_partitions_per_run`` each;
``run_key`` = days + commit). A record pushed late with an old watermark, or a batch the log
delivered again after a crash, is found all the same: its commit is new. Each tick also asks the
log how many batches wait for the drain (its lag) and, when that changed, records it as an
observation of the staged asset (``log_lag_batches``: plotted in the UI beside the runs'
metadata); the cursor keeps the commit and the last lag reported. A day after today
(a producer's clock ahead) is not a partition yet: the daily schedule runs it once it is
yesterday.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import dagster as dg

from blade_pipeline.config.settings import IngestSettings, SettingsError
from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.keys import staged_key
from blade_pipeline.defs.sensors import (
    MINIMUM_INTERVAL_SECONDS,
    SensorTickError,
    day_groups,
    range_request,
)
from blade_pipeline.push.drain import drain_lag
from blade_pipeline.sources.pushed_rows import PushedRows
from blade_pipeline.storage.lake import LakeError

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def _read_cursor(cursor: str | None) -> tuple[int, int | None]:
    """(commit seen, lag last reported) from the cursor."""
    if not cursor:
        return 0, None
    value = json.loads(cursor)
    return (value, None) if isinstance(value, int) else (value["commit"], value.get("lag"))


def evaluate_drained(source: BladeSource, pushed: PushedRows, cursor: str | None,
                     partitions: dg.PartitionsDefinition, lag: int | None = None
                     ) -> dg.SensorResult:
    """The sensor's logic, separate from its decorator so tests can call it directly
    (``lag``: the batches waiting for the drain, None when the log did not answer)."""
    seen, reported = _read_cursor(cursor)
    committed = pushed.committed(source.name)
    newest = max(committed.commit, seen)
    days = [{"day": dt.date.fromisoformat(day)} for day, commit in committed.days.items()
            if commit > seen]
    groups = day_groups(days, set(partitions.get_partition_keys()),
                        source.max_partitions_per_run)
    requests = [range_request(g[0]["day"].isoformat(), g[-1]["day"].isoformat(),
                              f"commit{newest}", {"blade/trigger": "drained-sensor"})
                for g in groups]
    events = []
    if lag is not None and lag != reported:
        events.append(dg.AssetObservation(staged_key(source), metadata={
            "log_lag_batches": dg.MetadataValue.int(lag),
            "drained_commit": dg.MetadataValue.int(committed.commit),
            "newest_drained_sequence": dg.MetadataValue.int(committed.sequence)}))
        reported = lag
    said = "log lag unknown (the log does not answer)" if lag is None else \
        f"log lag {lag} batches"
    return dg.SensorResult(
        run_requests=requests, asset_events=events or None,
        skip_reason=None if requests else (f"{source.data_type}: nothing drained after "
                                           f"commit {seen}; {said}"),
        cursor=json.dumps({"commit": newest, "lag": reported}))


def _lag(source: BladeSource) -> int | None:
    """The source's drain lag from the ingest server's log (None: not configured or away)."""
    try:
        settings = IngestSettings.load()
    except SettingsError:
        return None
    return drain_lag(settings.nats_url.get_secret_value(), settings.stream, source.name)


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
    def drained(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        pushed: PushedRows = getattr(context.resources, source.resource_key)
        try:
            return evaluate_drained(source, pushed, context.cursor, partitions, _lag(source))
        except LakeError as exc:
            raise SensorTickError(f"[{source.data_type}] drained sensor: cannot read the "
                                  f"drained days (the cursor stays at commit "
                                  f"{_read_cursor(context.cursor)[0]}; the next tick "
                                  f"retries): {exc}") from None

    return drained
