"""ONE factory for every BLADE data type: staged asset, blocking checks, catalog asset.

    blade/<type>/staged   extract the days -> validate (quarantine) -> items -> Parquet per day
    blade/<type>/catalog  diff staged items against the catalog -> upload new/changed items

A run covers one day or a range of days (``BackfillPolicy.single_run`` by default, or chunks of
``max_partitions_per_run``): one streamed query for the range, files, checks, checkpoints and
outcomes per day. A day that fails its checks is not uploaded; the other days are, and the
catalog asset materializes them day by day before failing with the days it left out.
The bodies are thin: the work is in ``ingest`` (shared with jobs and the bench).
"""


import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from blade_pipeline import day_checks, ingest, item_json
from blade_pipeline.items import IngestRun
from blade_pipeline.partitions import daily_partitions
from blade_pipeline.resources.catalog import CatalogAuthError, CatalogClient, CatalogError
from blade_pipeline.resources.lake import LakeError, ParquetLake
from blade_pipeline.resources.warehouse import (
    DatabricksWarehouse,
    WarehouseAuthError,
    WarehouseError,
    WarehouseQueryError,
)
from blade_pipeline.sources import BladeSource

#: Transient failures (warehouse/catalog unavailable) are retried with backoff and jitter.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL,
                              jitter=dg.Jitter.PLUS_MINUS)
POOL = "blade"
PROGRESS_EVERY_S = 2.0  # a range run's staging progress line, at most this often
FATAL = (WarehouseAuthError, WarehouseQueryError, CatalogAuthError, LakeError)


def backfill_policy(source: BladeSource) -> dg.BackfillPolicy:
    """One run per backfill, or runs of at most ``max_partitions_per_run`` days."""
    if source.max_partitions_per_run is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(source.max_partitions_per_run)


def run_label(source: BladeSource, days: list[str]) -> str:
    """``maintenance 2024-01-01`` or ``maintenance 2024-01-01...2024-03-31``."""
    return f"{source.data_type} {days[0]}" + (f"...{days[-1]}" if len(days) > 1 else "")


def staged_key(source: BladeSource) -> dg.AssetKey:
    return dg.AssetKey(["blade", source.data_type, "staged"])


def catalog_key(source: BladeSource) -> dg.AssetKey:
    return dg.AssetKey(["blade", source.data_type, "catalog"])


def _fail(source: BladeSource, exc: Exception) -> dg.Failure:
    """A Dagster failure naming the source; fatal errors are not retried."""
    return dg.Failure(description=f"[{source.data_type}] {exc}",
                      allow_retries=not isinstance(exc, FATAL))


@contextlib.contextmanager
def paused_on_terminate(label: str) -> Iterator[None]:
    """Terminate (the UI's pause) ends the step for good instead of being retried.

    Dagster re-runs an interrupted step when it has a RetryPolicy (meant for preemption); a
    user's Terminate must stop the run instead, leaving the checkpoint for Re-execute."""
    try:
        yield
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise dg.Failure(description=f"[{label}] terminated: paused between batches with the "
                         "checkpoint saved; Re-execute (from failure) resumes after the last "
                         "acknowledged batch", allow_retries=False) from None


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no valid rows_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row[c]).replace("|", "\\|").replace("\n", " ")[:60] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def range_stage_metadata(results: dict[str, ingest.StageResult], seconds: float,
                         raw_schema: pa.Schema | None) -> dict[str, Any]:
    """Metadata of a range run's staged materialization: Dagster records it once per day of
    the range, so it holds the range's totals only (kept small); each day's own numbers are in
    its checks' evaluations (rows, quarantined, reasons, schema errors) and in its file's
    footer."""
    extracted = sum(r.extracted for r in results.values())
    quarantined = sum(r.quarantined for r in results.values())
    meta: dict[str, Any] = {
        "days": len(results), "first_day": min(results), "last_day": max(results),
        "range_rows_extracted": extracted,
        "range_rows_valid": sum(r.valid for r in results.values()),
        "range_rows_quarantined": quarantined,
        "range_bytes": sum(r.bytes for r in results.values()),
        "seconds": round(seconds, 3),
        "rows_per_second": round(extracted / seconds) if seconds else 0,
        "days_with_quarantined_rows": sum(1 for r in results.values() if r.quarantined),
        "days_with_schema_errors": dg.MetadataValue.json(
            [d for d, r in results.items() if r.schema_errors]),
    }
    if raw_schema is not None:
        meta["dagster/column_schema"] = _table_schema(raw_schema)
    return meta


def stage_metadata(result: ingest.StageResult, raw_schema: pa.Schema | None) -> dict[str, Any]:
    """MaterializeResult metadata of a staged partition or query result."""
    meta: dict[str, Any] = {
        "dagster/row_count": result.valid,
        "rows_extracted": result.extracted,
        "rows_valid": result.valid,
        "rows_quarantined": result.quarantined,
        "invalid_fraction": round(result.invalid_fraction, 6),
        "quarantine_reasons": dg.MetadataValue.json(result.reasons),
        "schema_errors": dg.MetadataValue.json(result.schema_errors),
        "extra_columns": dg.MetadataValue.json(result.extra_columns),
        "bytes": result.bytes,
        "rows_per_second": round(result.rows_per_second),
        "seconds": round(result.seconds, 3),
        "path": dg.MetadataValue.path(result.path),
        "quarantine_path": dg.MetadataValue.path(result.quarantine_path),
        "staged_id": result.staged_id,
        "preview": dg.MetadataValue.md(_markdown_table(result.preview)),
    }
    if raw_schema is not None:
        meta["dagster/column_schema"] = _table_schema(raw_schema)
    return meta




def build_blade_assets(source: BladeSource, batch_rows: int = ingest.DEFAULT_BATCH_ROWS,
                       ) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """Staged + catalog assets and the staged asset's blocking checks for one source."""
    partitions = daily_partitions(source)
    staged_asset_key, catalog_asset_key = staged_key(source), catalog_key(source)
    group = f"blade_{source.data_type}"
    tags = {"blade/data_type": source.data_type}
    policy = backfill_policy(source)

    @dg.asset(
        key=staged_asset_key, partitions_def=partitions, group_name=group, pool=POOL,
        retry_policy=RETRY_POLICY, kinds={"databricks", "parquet"}, tags=tags,
        backfill_policy=policy,
        description=f"{source.display_name}: each day of `{source.warehouse.table}` validated "
                    "with Pandera and staged as BLADE items in Parquet (invalid rows "
                    "quarantined with a reason each); a range of days is one query.",
        metadata={"source_table": source.warehouse.qualified_name.replace("`", ""),
                  "primary_key": source.primary_key, "watermark": source.watermark_column},
    )
    def staged(context: dg.AssetExecutionContext, warehouse: DatabricksWarehouse,
               lake: ParquetLake) -> dg.MaterializeResult:
        days = list(context.partition_keys)
        label, single = run_label(source, days), context.has_partition_key
        raw_schema: list[pa.Schema] = []
        sql, bounds = ingest.partition_sql(source, len(days)), ingest.day_range_bounds(
            days[0], days[-1])
        reported = [0.0]

        def batches():
            for batch in ingest.extract(warehouse, sql, bounds, batch_rows):
                if not raw_schema:
                    raw_schema.append(batch.schema)
                yield batch

        def on_batch(progress: ingest.RangeProgress) -> None:
            if single:
                context.log.info(f"[{label}] staged {progress.extracted} rows "
                                 f"({progress.valid} valid, {progress.quarantined} quarantined)")
            elif time.monotonic() - reported[0] >= PROGRESS_EVERY_S:
                reported[0] = time.monotonic()
                context.log.info(f"[{label}] {progress.summary()}")
                context.log_event(dg.AssetObservation(asset_key=staged_asset_key, metadata={
                    "days_done": f"{progress.days_done}/{progress.days_total}",
                    "rows_extracted": progress.extracted, "items": progress.valid,
                    "rows_quarantined": progress.quarantined,
                    "eta_seconds": round(progress.eta_seconds or 0.0, 1)}))

        if not item_json.available():
            context.log.warning(f"[{label}] {item_json.NOT_BUILT}")
        started = time.perf_counter()
        try:
            with paused_on_terminate(label):
                # keys repeated within a day (one day: within the run, the cheaper query)
                duplicates = ingest.duplicate_keys(warehouse, source,
                                                   ingest.partition_sql(source), bounds,
                                                   by_day=len(days) > 1)
                results = ingest.stage_days(source, batches(), lake, days,
                                            IngestRun.now(context.run.run_id),
                                            on_batch=on_batch, duplicates=duplicates)
        except (WarehouseError, LakeError) as exc:
            raise _fail(source, exc) from None
        drift = sorted({e for r in results.values() for e in r.schema_errors})
        if drift:
            context.log.warning(f"[{label}] schema drift: " + "; ".join(drift))
        schema = raw_schema[0] if raw_schema else None
        if single:
            return dg.MaterializeResult(metadata=stage_metadata(results[days[0]], schema))
        context.log.info(f"[{label}] {len(days)} days staged in "
                         f"{time.perf_counter() - started:.1f}s")
        return dg.MaterializeResult(metadata=range_stage_metadata(
            results, time.perf_counter() - started, schema))

    def day_check(check: Callable[[BladeSource, dict[str, Any] | None],
                                  day_checks.CheckOutcome], description: str
                  ) -> dg.AssetChecksDefinition:
        """A blocking check of each staged day. One day: Dagster blocks the catalog step when
        it fails. A range: one evaluation per day (non-blocking for Dagster, so the good days
        go on), and the catalog step leaves out the days that fail."""

        @dg.asset_check(asset=staged_asset_key, name=check.__name__, blocking=True,
                        partitions_def=partitions, description=description)
        def _check(context: dg.AssetCheckExecutionContext, lake: ParquetLake):
            op_context = context.op_execution_context
            if op_context.has_partition_key:
                outcome = check(source, _footer(lake, op_context.partition_key))
                yield dg.AssetCheckResult(passed=outcome.passed,
                                          description=outcome.description,
                                          metadata=_check_metadata(outcome))
                return
            for day in op_context.partition_keys:
                outcome = check(source, _footer(lake, day))
                yield dg.AssetCheckEvaluation(
                    asset_key=staged_asset_key, check_name=check.__name__,
                    passed=outcome.passed, partition=day, blocking=False,
                    description=f"{day}: {outcome.description}",
                    metadata=_check_metadata(outcome))
            yield dg.Output(None)

        return _check

    def _footer(lake: ParquetLake, day: str) -> dict[str, Any] | None:
        return lake.footer_metadata(lake.partition_dir(source.data_type, day))

    schema_conforms = day_check(
        day_checks.schema_conforms,
        "The warehouse rows carry every column the Pandera model requires, with its type "
        "(added columns are allowed).")
    invalid_fraction = day_check(
        day_checks.invalid_fraction,
        f"Quarantined rows are at most max({source.invalid_rows_allowed} rows, "
        f"{source.max_invalid_fraction:.1%} of the extracted rows) per day.")

    @dg.asset(
        key=catalog_asset_key, deps=[staged_asset_key], partitions_def=partitions,
        group_name=group, pool=POOL, retry_policy=RETRY_POLICY, kinds={"api"}, tags=tags,
        backfill_policy=policy, output_required=False,
        description=f"{source.display_name} items in the catalog (`{source.catalog_data_source}`)"
                    ": staged items diffed against the catalog, new and changed ones uploaded "
                    "in batches with a checkpoint per day after each acknowledged batch.",
    )
    def catalog(context: dg.AssetExecutionContext, lake: ParquetLake, catalog: CatalogClient):
        days = list(context.partition_keys)
        label, single = run_label(source, days), context.has_partition_key
        files, blocked = [], {}
        for day in days:
            items_dir = lake.partition_dir(source.data_type, day)
            footer = lake.footer_metadata(items_dir)
            if footer is None:
                if single:
                    raise dg.Failure(description=f"[{label}] nothing staged at {items_dir}: "
                                     f"materialize {staged_key(source).to_user_string()} first",
                                     allow_retries=False)
                blocked[day] = day_checks.NOT_STAGED
                continue
            failed = day_checks.failed_checks(source, footer)
            if failed:
                blocked[day] = "; ".join(f"{o.name}: {o.description}" for o in failed)
                continue
            files.append(_staged_file(lake, day, items_dir, footer,
                                      lake.checkpoint_path(source.data_type, day),
                                      catalog.batch_size))
        if single and blocked:
            raise dg.Failure(description=f"[{label}] not uploaded: {blocked[days[0]]}",
                             allow_retries=False)

        def observe(meta: dict[str, Any]) -> None:
            context.log_event(dg.AssetObservation(
                asset_key=catalog_asset_key, partition=days[0] if single else None,
                metadata=meta))

        def day_done(staged_file: ingest.StagedFile) -> None:
            if not single:
                context.log_event(dg.AssetMaterialization(
                    asset_key=catalog_asset_key, partition=staged_file.key,
                    metadata=staged_file.metadata()))

        # newest day first: a key held by two days of the range then reaches the catalog once,
        # as the newest row (the older one is found older than the catalog's and skipped)
        files.reverse()
        try:
            progress = upload_files(context, source, lake, catalog, files, label,
                                    observe=observe, on_file_done=day_done)
        except (CatalogError, LakeError) as exc:
            raise _fail(source, exc) from None
        if single:
            yield dg.MaterializeResult(metadata=upload_metadata(progress))
            return
        if blocked:
            listed = "; ".join(f"{day}: {why}" for day, why in list(blocked.items())[:20])
            raise dg.Failure(
                description=f"[{label}] {len(blocked)} of {len(days)} days were not uploaded "
                            f"(the other {len(days) - len(blocked)} were): {listed}"
                            + (" ..." if len(blocked) > 20 else "")
                            + ". Look at the staged asset's checks and quarantine for those "
                              "days, then re-run just them.",
                metadata={"failed_days": dg.MetadataValue.json(blocked),
                          **upload_metadata(progress)},
                allow_retries=False)

    return [staged, schema_conforms, invalid_fraction, catalog]


def _check_metadata(outcome: day_checks.CheckOutcome) -> dict[str, Any]:
    return {k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
            for k, v in outcome.metadata.items()}


def upload_metadata(progress: ingest.UploadProgress) -> dict[str, Any]:
    return {
        "items_total": progress.total, "created": progress.created,
        "updated": progress.updated, "unchanged": progress.unchanged,
        "rejected": progress.rejected, "skipped_by_checkpoint": progress.skipped,
        "kept_newer_in_catalog": progress.stale,
        "batches": progress.batches, "seconds": round(progress.seconds, 3),
        "items_per_second": round(progress.items_per_second),
        "rejected_items": dg.MetadataValue.json(progress.rejected_items[:20]),
    }


def upload_files(context: dg.OpExecutionContext | dg.AssetExecutionContext,
                 source: BladeSource, lake: ParquetLake, catalog: CatalogClient,
                 files: list[ingest.StagedFile], label: str,
                 observe: Callable[[dict[str, Any]], None] | None = None,
                 on_file_done: Callable[[ingest.StagedFile], None] | None = None,
                 ) -> ingest.UploadProgress:
    """Upload staged files, reporting progress in the run log (and to ``observe``)."""
    resumed = [f for f in files if f.checkpoint.done]
    if resumed:
        context.log.info(f"[{label}] resuming: {sum(f.checkpoint.done for f in resumed)} items "
                         f"of {len(resumed)} staged file(s) already acknowledged by the catalog "
                         "are skipped")

    def on_progress(progress: ingest.UploadProgress) -> None:
        context.log.info(f"[{label}] {progress.summary()}")
        if observe:
            observe({"processed": progress.processed, "total": progress.total,
                     "batch": f"{progress.batch}/{progress.batches}",
                     "days_done": f"{progress.files_done}/{progress.files}",
                     "created": progress.created, "updated": progress.updated,
                     "unchanged": progress.unchanged, "rejected": progress.rejected,
                     "eta_seconds": round(progress.eta_seconds or 0.0, 1)})

    with paused_on_terminate(label):
        progress = ingest.upload(lake, files, source, catalog, on_progress, on_file_done)
    if progress.rejected:
        context.log.warning(f"[{label}] the catalog rejected {progress.rejected} items, e.g. "
                            f"{progress.rejected_items[:3]}")
    return progress


def _staged_file(lake: ParquetLake, key: str, items_dir: str, footer: dict[str, Any],
                 checkpoint_path: str, batch_size: int) -> ingest.StagedFile:
    """A staged items file (its footer read) with its checkpoint."""
    checkpoint = ingest.Checkpoint.load(lake, checkpoint_path, footer.get("staged_id", ""),
                                        int(footer.get("valid", 0)), batch_size)
    return ingest.StagedFile(key, items_dir, checkpoint)


def staged_file(lake: ParquetLake, key: str, items_dir: str, checkpoint_path: str,
                batch_size: int) -> ingest.StagedFile | None:
    """A staged items file with its checkpoint, or None when nothing is staged there."""
    footer = lake.footer_metadata(items_dir)
    return None if footer is None else _staged_file(lake, key, items_dir, footer,
                                                    checkpoint_path, batch_size)
