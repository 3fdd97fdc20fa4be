"""ONE factory for every BLADE data type: staged asset, blocking checks, catalog asset.

    blade/<type>/staged   extract the days -> validate (quarantine) -> items -> Parquet per day
    blade/<type>/catalog  diff staged items against the catalog -> upload new/changed items

A run covers one day or a range of days (``BackfillPolicy.single_run`` by default, or chunks of
``max_partitions_per_run``): one streamed query for the range, files, checks, checkpoints and
outcomes per day. A day that fails its checks is not uploaded; the other days are, and the
catalog asset materializes them day by day before failing with the days it left out.
The bodies are thin: the work is in ``steps`` (``stage_partition`` is shared with the bench,
the extract/stage/upload steps with the jobs); keys, failures and metadata are in this
package's ``keys``, ``failures`` and ``metadata``.
"""


import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs import day_check_specs, landing
from blade_pipeline.defs.failures import POOL, RETRY_POLICY, paused_on_terminate, step_failure
from blade_pipeline.defs.keys import catalog_key, run_label, staged_key
from blade_pipeline.defs.metadata import (
    UploadReport,
    range_stage_metadata,
    schema_version_metadata,
    stage_metadata,
    upload_metadata,
)
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.sources.reader import SourceError, SourceReader
from blade_pipeline.steps import day_checks, extract, staging, uploading
from blade_pipeline.steps.items import IngestRun
from blade_pipeline.steps.stage_partition import stage_partition
from blade_pipeline.storage.catalog import Catalog, CatalogError
from blade_pipeline.storage.lake import LakeError, ParquetLake

__all__ = ["POOL", "build_blade_assets", "catalog_key", "staged_key"]
PROGRESS_EVERY_S = 2.0  # a range run's staging progress line, at most this often

def backfill_policy(source: BladeSource) -> dg.BackfillPolicy:
    """One run per backfill, or runs of at most ``max_partitions_per_run`` days."""
    if source.max_partitions_per_run is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(source.max_partitions_per_run)




def build_blade_assets(source: BladeSource, batch_rows: int = extract.DEFAULT_BATCH_ROWS,
                       ) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """Staged + catalog assets and the staged asset's blocking checks for one source."""
    partitions = daily_partitions(source)
    staged_asset_key, catalog_asset_key = staged_key(source), catalog_key(source)
    group = f"blade_{source.data_type}"
    tags = {"blade/data_type": source.data_type}
    policy = backfill_policy(source)

    # a CSV source's days are read from the files landed so far (any of them)
    landed_dep = ([dg.AssetDep(landing.landed_key(source),
                               partition_mapping=dg.AllPartitionMapping())]
                  if source.kind == "csv" else None)

    @dg.asset(
        key=staged_asset_key, partitions_def=partitions, group_name=group, pool=POOL,
        deps=landed_dep,
        retry_policy=RETRY_POLICY, kinds={source.kind, "parquet"}, tags=tags,
        backfill_policy=policy, required_resource_keys={source.resource_key, "lake"},
        check_specs=day_check_specs.check_specs(source, staged_asset_key),
        description=f"{source.display_name}: each day of `{source.location.table}` validated "
                    "with Pandera and staged as BLADE items in Parquet (invalid rows "
                    "quarantined with a reason each); a range of days is one query.",
        metadata={"source_table": source.table_label, "source_kind": source.kind,
                  "primary_key": source.primary_key, "watermark": source.watermark_column},
    )
    def staged(context: dg.AssetExecutionContext) -> Iterator[Any]:
        # the source's own resource: the Databricks warehouse, or the kind's database
        reader: SourceReader = getattr(context.resources, source.resource_key)
        lake: ParquetLake = context.resources.lake
        days = list(context.partition_keys)
        label, single = run_label(source, days), context.has_partition_key
        reported = [0.0]

        def on_batch(progress: staging.RangeProgress) -> None:
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

        started = time.perf_counter()
        try:
            with paused_on_terminate(label):
                staged_days = stage_partition(source, reader, lake, days,
                                              IngestRun.now(context.run.run_id),
                                              batch_rows, on_batch)
        except (SourceError, LakeError) as exc:
            raise step_failure(source.data_type, exc) from None
        results, plan, run_schema = staged_days.days, staged_days.plan, staged_days.run_schema
        if staged_days.drift:
            context.log.warning(f"[{label}] schema drift: " + "; ".join(staged_days.drift))
        schema = staged_days.raw_schema
        versioned = schema_version_metadata(plan, run_schema) if plan and run_schema else {}
        if plan and run_schema and plan.decisions:
            context.log.warning(
                f"[{label}] schema v{plan.observed} differs from the expected v{plan.expected}: "
                + "; ".join(d.describe() for d in plan.decisions)
                + (f" -- v{plan.observed} is now the expected version" if run_schema.adopted
                   else ""))
        # the blocking checks, on the footers just written (day_check_specs)
        # (after this run's adoption, if any)
        expected = staged_days.history.expected_number()
        footers = {day: results[day].footer() for day in days}
        outcomes = {day: [check(source, footers[day], expected) for check in day_checks.CHECKS]
                    for day in days}
        if single:
            yield dg.MaterializeResult(
                metadata={**stage_metadata(results[days[0]], schema), **versioned},
                check_results=[day_check_specs.day_result(days[0], outcome)
                               for outcome in outcomes[days[0]]])
            return
        context.log.info(f"[{label}] {len(days)} days staged in "
                         f"{time.perf_counter() - started:.1f}s")
        yield dg.MaterializeResult(metadata={**range_stage_metadata(
            results, time.perf_counter() - started, schema), **versioned})
        yield from day_check_specs.range_results(context, staged_asset_key, outcomes)

    @dg.asset(
        key=catalog_asset_key, deps=[staged_asset_key], partitions_def=partitions,
        group_name=group, pool=POOL, retry_policy=RETRY_POLICY, kinds={"api"}, tags=tags,
        backfill_policy=policy, output_required=False,
        description=f"{source.display_name} items in the catalog (`{source.catalog_data_source}`)"
                    ": staged items diffed against the catalog, new and changed ones uploaded "
                    "in batches with a checkpoint per day after each acknowledged batch.",
    )
    def catalog(context: dg.AssetExecutionContext, lake: ParquetLake, catalog: Catalog):
        days = list(context.partition_keys)
        label, single = run_label(source, days), context.has_partition_key

        def observe(meta: dict[str, Any]) -> None:
            context.log_event(dg.AssetObservation(
                asset_key=catalog_asset_key, partition=days[0] if single else None,
                metadata=meta))

        def day_done(staged_file: uploading.StagedFile) -> None:
            if not single:
                context.log_event(dg.AssetMaterialization(
                    asset_key=catalog_asset_key, partition=staged_file.key,
                    metadata=staged_file.metadata()))

        report = UploadReport(context, label, observe)
        try:
            with paused_on_terminate(label):
                outcome = uploading.upload_days(lake, source, catalog, days,
                                             on_start=report.on_start,
                                             on_progress=report.on_progress,
                                             on_file_done=day_done)
        except (CatalogError, LakeError) as exc:
            raise step_failure(source.data_type, exc) from None
        report.finished(outcome.progress, kept_in=lake.where(
            lake.path(source.data_type, "rejected")))
        left_out = outcome.left_out
        if single and left_out:
            items_dir = lake.partition_dir(source.data_type, days[0])
            why = (f"nothing staged at {items_dir}: materialize "
                   f"{staged_key(source).to_user_string()} first"
                   if left_out[days[0]] == day_checks.NOT_STAGED
                   else f"not uploaded: {left_out[days[0]]}")
            raise dg.Failure(description=f"[{label}] {why}", allow_retries=False)
        if single:
            yield dg.MaterializeResult(metadata=upload_metadata(outcome.progress))
            return
        if left_out:
            listed = "; ".join(f"{day}: {why}" for day, why in list(left_out.items())[:20])
            raise dg.Failure(
                description=f"[{label}] {len(left_out)} of {len(days)} days were not uploaded "
                            f"(the other {len(days) - len(left_out)} were): {listed}"
                            + (" ..." if len(left_out) > 20 else "")
                            + ". Look at the staged asset's checks and quarantine for those "
                              "days, then re-run just them.",
                metadata={"failed_days": dg.MetadataValue.json(left_out),
                          **upload_metadata(outcome.progress)},
                allow_retries=False)

    built = [staged, catalog]
    return [landing.build_landed_asset(source), *built] if source.kind == "csv" else built


def build_source_checks(source: BladeSource) -> list[dg.AssetChecksDefinition]:
    """The checks with steps of their own: ``reconciled`` on the catalog asset (after the
    upload) and, for an enabled source, ``freshness`` on both assets."""
    from blade_pipeline.defs.reconciliation_check import build_reconciliation_check
    from blade_pipeline.ops.freshness import build_freshness_check

    checks = [build_reconciliation_check(source)]
    return [*checks, build_freshness_check(source)] if source.enabled else checks
