"""CSV drops in Dagster (``kind: csv``): the landed asset, its job, and the landing sensor.

    <landing>/<folder>/x.csv ──landing sensor──▶ blade/<type>/landed  (one dynamic partition
                                                 per file: parse, quarantine lines, move)
    landed materializations ──landing sensor──▶ blade_<type>_job over the days they hold
                                                 (staged → checks → catalog, unchanged code)

A file is picked up when it is **complete**: with ``complete_when: stable`` (the default) when
its size and modification time did not change between two ticks of the sensor; with
``marker``, when ``<file>.done`` lies beside it (the producer writes the marker last). Each
complete file is one landing run (``run_key`` = name, size, mtime: a file re-dropped later is
a new run; its content hash then tells whether it is a duplicate). The days a landed file holds
are then one range run of the source's job (contiguous days; several files landed since the
last request share runs), requested only while no run of that job is in flight, so two runs
never stage the same day from different sets of landed files.
"""

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from blade_pipeline.config.sources import BladeSource, CsvDrop
from blade_pipeline.defs.failures import POOL, RETRY_POLICY, step_failure
from blade_pipeline.defs.sensors import (
    AUTOMATED_RUN_TAGS,
    MINIMUM_INTERVAL_SECONDS,
    SensorTickError,
    day_groups,
    range_request,
)
from blade_pipeline.sources.csv_drops import CsvDrops
from blade_pipeline.sources.csv_landing import (
    LandedFile,
    LandingError,
    land_file,
    quarantined_lines,
)
from blade_pipeline.storage.lake import FileEntry, LakeError

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

#: characters Dagster does not allow in a partition key (a file named so is not picked up)
_UNFIT_KEY = (",", "[", "]", "*", "\n", "...")
PREVIEW_LINES = 10


def landed_key(source: BladeSource) -> dg.AssetKey:
    return dg.AssetKey(["blade", source.data_type, "landed"])


def file_partitions(source: BladeSource) -> dg.DynamicPartitionsDefinition:
    """One partition per dropped file (its name), added by the landing sensor."""
    return dg.DynamicPartitionsDefinition(name=f"blade_{source.data_type}_files")


def landed_metadata(landed: LandedFile, quarantine_where: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "file": landed.name, "sha256": landed.sha256, "bytes": landed.bytes,
        "rows_landed": landed.rows, "lines_quarantined": landed.quarantined_lines,
        "first_day": landed.first_day or "", "last_day": landed.last_day or "",
        "moved_to": dg.MetadataValue.path(landed.moved_to)}
    if landed.duplicate_of:
        meta["duplicate_of"] = landed.duplicate_of
    if landed.quarantined_lines:
        meta["quarantine"] = dg.MetadataValue.path(quarantine_where)
    if landed.missing_columns:
        meta["missing_columns"] = ", ".join(landed.missing_columns)
    if landed.undeclared_columns:
        meta["undeclared_columns"] = ", ".join(landed.undeclared_columns)
    return meta


def _preview(drops: CsvDrops, drop: CsvDrop, landed: LandedFile) -> str:
    table = quarantined_lines(drops, drop, landed.sha256)
    if table is None:
        return ""
    rows = table.slice(0, PREVIEW_LINES).to_pylist()
    return "; ".join(f"line {r['line']}: {r['reason']}" for r in rows) + (
        f" (and {table.num_rows - PREVIEW_LINES} more)" if table.num_rows > PREVIEW_LINES
        else "")


def build_landed_asset(source: BladeSource) -> dg.AssetsDefinition:
    """The landed asset of a CSV source: a run lands one dropped file (its partition)."""
    drop = source.csv
    assert drop is not None

    @dg.asset(
        key=landed_key(source), partitions_def=file_partitions(source),
        group_name=f"blade_{source.data_type}", pool=POOL, retry_policy=RETRY_POLICY,
        kinds={"csv"}, tags={"blade/data_type": source.data_type},
        required_resource_keys={"csv"},
        description=f"{source.display_name}: each file dropped in `{drop.folder}/` parsed with "
                    "the declared column types, its rows kept in the lake (landed/), lines that "
                    "do not parse quarantined with file, line and reason, the file moved to "
                    "_processed/ (a file whose content landed before is only recorded).",
        metadata={"landing_folder": drop.folder, "complete_when": drop.complete_when},
    )
    def landed(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        drops: CsvDrops = context.resources.csv
        name = context.partition_key
        path = f"{drops.folder(drop)}/{name}"
        label = f"[{source.data_type}] {name}"
        try:
            if not drops.landing.exists(path):
                raise dg.Failure(
                    description=f"{label} is not in {drops.landing.where(drops.folder(drop))} "
                                "(landed and moved to _processed/ already, or removed)",
                    allow_retries=False)
            result = land_file(drops, source, path, context.run.run_id)
        except LandingError as exc:
            raise dg.Failure(description=f"[{source.data_type}] cannot land {exc}",
                             allow_retries=False) from None
        except LakeError as exc:
            raise step_failure(source.data_type, exc) from None
        quarantine_where = drops.lake.where(drops.landed_dir(drop.folder, "_quarantine"))
        if result.duplicate_of:
            context.log.warning(f"{label}: the same content (sha256 {result.sha256[:12]}) "
                                f"landed before as {result.duplicate_of}: not landed again; "
                                f"moved to {result.moved_to}")
        else:
            context.log.info(f"{label}: {result.rows} rows landed (days {result.first_day} .. "
                             f"{result.last_day}); moved to {result.moved_to}")
        if result.quarantined_lines:
            context.log.warning(f"{label}: {result.quarantined_lines} line(s) quarantined in "
                                f"{quarantine_where}: {_preview(drops, drop, result)}")
        if result.missing_columns:
            context.log.warning(f"{label}: the file lacks declared column(s) "
                                f"{', '.join(result.missing_columns)} (NULL in its rows)")
        return dg.MaterializeResult(metadata=landed_metadata(result, quarantine_where))

    return landed


def build_landing_job(source: BladeSource) -> "UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        name=f"blade_{source.data_type}_landing_job",
        selection=dg.AssetSelection.assets(landed_key(source)),
        description=f"{source.display_name}: land one dropped CSV file.",
        tags={"blade/data_type": source.data_type})


# ---- the landing sensor ------------------------------------------------------------------------
@dataclass
class LandingCursor:
    """The sensor's memory: each file's size and mtime at the last tick, and the last landed
    materialization whose days were requested."""

    seen: dict[str, list[int]] = field(default_factory=dict)
    after: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "LandingCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps({"seen": self.seen, "after": self.after}, sort_keys=True)


def complete_files(files: list[FileEntry], markers: set[str], cursor: LandingCursor,
                   drop: CsvDrop) -> list[FileEntry]:
    """The files that are complete (see the module doc)."""
    if drop.complete_when == "marker":
        return [f for f in files if f.name in markers]
    return [f for f in files if cursor.seen.get(f.name) == [f.size, f.mtime_ns]]


def landing_requests(source: BladeSource, files: list[FileEntry], markers: set[str],
                     cursor: LandingCursor, job_name: str) -> tuple[list[dg.RunRequest],
                                                                     list[str], list[str]]:
    """Landing runs for the complete files, their partition keys, and the names left out
    (a name Dagster cannot take as a partition key)."""
    drop = source.csv
    assert drop is not None
    requests, keys, unfit = [], [], []
    for entry in complete_files(files, markers, cursor, drop):
        if any(c in entry.name for c in _UNFIT_KEY):
            unfit.append(entry.name)
            continue
        keys.append(entry.name)
        requests.append(dg.RunRequest(
            partition_key=entry.name, job_name=job_name,
            run_key=f"land:{entry.name}:{entry.size}:{entry.mtime_ns}",
            tags={**AUTOMATED_RUN_TAGS, "blade/trigger": "landing-sensor",
                  "blade/landed_file": entry.name}))
    return requests, keys, unfit


def staging_requests(source: BladeSource, landed: list[dict[str, Any]], keys: set[str],
                     job_name: str) -> list[dg.RunRequest]:
    """Range runs of the source's job over the days the ``landed`` files hold (each a dict of
    ``file``, ``first_day``, ``last_day``, ``storage_id``)."""
    days: dict[dt.date, list[str]] = {}
    for event in landed:
        if not event["first_day"]:
            continue
        day = dt.date.fromisoformat(event["first_day"])
        while day <= dt.date.fromisoformat(event["last_day"]):
            days.setdefault(day, []).append(event["file"])
            day += dt.timedelta(days=1)
    rows = [{"day": day, "files": files} for day, files in days.items()]
    last = max(e["storage_id"] for e in landed) if landed else 0
    requests = []
    for group in day_groups(rows, keys, source.max_partitions_per_run):
        files = sorted({f for row in group for f in row["files"]})
        listed = ", ".join(files[:5]) + (f" (+{len(files) - 5})" if len(files) > 5 else "")
        requests.append(range_request(
            group[0]["day"].isoformat(), group[-1]["day"].isoformat(), f"landed:{last}",
            {"blade/trigger": "landing-sensor", "blade/landed_files": listed},
            job_name=job_name))
    return requests


def _landed_since(instance: dg.DagsterInstance, source: BladeSource,
                  after: int | None) -> list[dict[str, Any]]:
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=landed_key(source), after_storage_id=after),
        limit=1000, ascending=True)
    events = []
    for record in found.records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}

        def text(key: str, meta: dict = meta) -> str:
            value = meta.get(key)
            return str(value.value) if value is not None else ""

        events.append({"file": text("file"), "first_day": text("first_day"),
                       "last_day": text("last_day"), "storage_id": record.storage_id})
    return events


def _job_in_flight(instance: dg.DagsterInstance, job_name: str) -> bool:
    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.CANCELING]
    return bool(instance.get_run_ids(dg.RunsFilter(job_name=job_name, statuses=statuses),
                                     limit=1))


def build_landing_sensor(source: BladeSource, landing_job: "UnresolvedAssetJobDefinition",
                         job: "UnresolvedAssetJobDefinition",
                         partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """The landing sensor of one CSV source; on by default when the source is enabled."""
    drop = source.csv
    assert drop is not None
    files_def = file_partitions(source)
    rule = ("its `.done` marker is there" if drop.complete_when == "marker"
            else "its size and mtime held still over two ticks")

    @dg.sensor(
        name=f"blade_{source.data_type}_landing", jobs=[landing_job, job],
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=(dg.DefaultSensorStatus.RUNNING if source.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Lands each complete {drop.pattern} file dropped in `{drop.folder}/` "
                    f"(complete when {rule}), then runs {job.name} over the days it holds.",
        required_resource_keys={"csv"},
    )
    def landing(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        drops: CsvDrops = context.resources.csv
        cursor = LandingCursor.parse(context.cursor)
        if context.cursor is None:  # first tick: what landed before the sensor is not its job
            newest = context.instance.fetch_materializations(landed_key(source), limit=1)
            cursor.after = newest.records[0].storage_id if newest.records else 0
        try:
            files, markers = drops.dropped(drop)
        except LakeError as exc:
            then = ("the next tick retries" if exc.transient else
                    "every tick fails until it is fixed")
            raise SensorTickError(f"[{source.data_type}] landing sensor: cannot list "
                                  f"{drops.landing_uri}/{drop.folder} ({then}): {exc}"
                                  ) from None
        requests, keys, unfit = landing_requests(source, files, markers, cursor,
                                                 landing_job.name)
        if unfit:
            context.log.warning(f"[{source.data_type}] not picked up (a partition key cannot "
                                f"hold , [ ] * or ...; rename them): {', '.join(unfit)}")
        known = set(context.instance.get_dynamic_partitions(files_def.name))
        new_keys = [k for k in keys if k not in known]
        landed = _landed_since(context.instance, source, cursor.after)
        if landed and not _job_in_flight(context.instance, job.name):
            requests += staging_requests(source, landed,
                                         set(partitions.get_partition_keys()), job.name)
            cursor.after = max(e["storage_id"] for e in landed)
        cursor.seen = {f.name: [f.size, f.mtime_ns] for f in files}
        return dg.SensorResult(
            run_requests=requests, cursor=cursor.dump(),
            dynamic_partitions_requests=[files_def.build_add_request(new_keys)]
            if new_keys else None,
            skip_reason=None if requests else dg.SkipReason(
                f"{source.data_type}: {len(files)} file(s) in {drop.folder}/, none complete "
                "and new" + (" (a run of the job is in flight: staging waits)"
                             if landed else "")))

    return landing
