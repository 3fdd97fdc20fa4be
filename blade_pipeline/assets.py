"""ONE factory for every BLADE data type: staged asset, blocking checks, catalog asset.

    blade/<type>/staged   extract the day -> validate (quarantine) -> items -> Parquet
    blade/<type>/catalog  diff staged items against the catalog -> upload new/changed items

The bodies are thin: the work is in ``ingest`` (shared with jobs and the bench).
"""


import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from blade_pipeline import ingest, item_json
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
from blade_pipeline.schemas import required_columns
from blade_pipeline.sources import BladeSource

#: Transient failures (warehouse/catalog unavailable) are retried with backoff and jitter.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL,
                              jitter=dg.Jitter.PLUS_MINUS)
POOL = "blade"
FATAL = (WarehouseAuthError, WarehouseQueryError, CatalogAuthError, LakeError)


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

    @dg.asset(
        key=staged_asset_key, partitions_def=partitions, group_name=group, pool=POOL,
        retry_policy=RETRY_POLICY, kinds={"databricks", "parquet"}, tags=tags,
        description=f"{source.display_name}: one day of `{source.warehouse.table}` validated "
                    "with Pandera and staged as BLADE items in Parquet (invalid rows "
                    "quarantined with a reason each).",
        metadata={"source_table": source.warehouse.qualified_name.replace("`", ""),
                  "primary_key": source.primary_key, "watermark": source.watermark_column},
    )
    def staged(context: dg.AssetExecutionContext, warehouse: DatabricksWarehouse,
               lake: ParquetLake) -> dg.MaterializeResult:
        day = context.partition_key
        raw_schema: list[pa.Schema] = []

        sql, bounds = ingest.partition_sql(source), ingest.day_bounds(day)

        def batches():
            for batch in ingest.extract(warehouse, sql, bounds, batch_rows):
                if not raw_schema:
                    raw_schema.append(batch.schema)
                yield batch

        def on_batch(result: ingest.StageResult) -> None:
            context.log.info(f"[{source.data_type} {day}] staged {result.extracted} rows "
                             f"({result.valid} valid, {result.quarantined} quarantined)")

        if not item_json.available():
            context.log.warning(f"[{source.data_type} {day}] {item_json.NOT_BUILT}")
        try:
            with paused_on_terminate(f"{source.data_type} {day}"):
                duplicates = ingest.duplicate_keys(warehouse, source, sql, bounds)
                result = ingest.stage(
                    source, batches(), lake, lake.partition_dir(source.data_type, day),
                    lake.partition_dir(source.data_type, day, "quarantine"),
                    IngestRun.now(context.run.run_id), on_batch=on_batch,
                    duplicates=duplicates)
        except (WarehouseError, LakeError) as exc:
            raise _fail(source, exc) from None
        if result.schema_errors:
            context.log.warning(f"[{source.data_type} {day}] schema drift: "
                                + "; ".join(result.schema_errors))
        return dg.MaterializeResult(
            metadata=stage_metadata(result, raw_schema[0] if raw_schema else None))

    def staged_footer(lake: ParquetLake, day: str) -> dict[str, Any] | None:
        return lake.footer_metadata(lake.partition_dir(source.data_type, day))

    @dg.asset_check(asset=staged_asset_key, name="schema_conforms", blocking=True,
                    partitions_def=partitions,
                    description="The warehouse rows carry every column the Pandera model "
                                "requires, with its type (added columns are allowed).")
    def schema_conforms(context: dg.AssetCheckExecutionContext,
                        lake: ParquetLake) -> dg.AssetCheckResult:
        footer = staged_footer(lake, context.partition_key)
        if footer is None:
            return dg.AssetCheckResult(passed=False, description="no staged partition found")
        errors = footer.get("schema_errors", [])
        return dg.AssetCheckResult(
            passed=not errors,
            description="; ".join(errors) if errors else "all required columns present",
            metadata={"schema_errors": dg.MetadataValue.json(errors),
                      "extra_columns": dg.MetadataValue.json(footer.get("extra_columns", [])),
                      "required_columns": dg.MetadataValue.json(
                          required_columns(source.data_type))})

    @dg.asset_check(asset=staged_asset_key, name="invalid_fraction", blocking=True,
                    partitions_def=partitions,
                    description=f"Quarantined rows are at most {source.max_invalid_fraction:.1%}"
                                " of the extracted rows.")
    def invalid_fraction(context: dg.AssetCheckExecutionContext,
                         lake: ParquetLake) -> dg.AssetCheckResult:
        footer = staged_footer(lake, context.partition_key)
        if footer is None:
            return dg.AssetCheckResult(passed=False, description="no staged partition found")
        extracted, quarantined = footer.get("extracted", 0), footer.get("quarantined", 0)
        fraction = quarantined / extracted if extracted else 0.0
        return dg.AssetCheckResult(
            passed=fraction <= source.max_invalid_fraction,
            description=f"{quarantined} of {extracted} rows quarantined ({fraction:.2%}; "
                        f"threshold {source.max_invalid_fraction:.2%})",
            metadata={"invalid_fraction": round(fraction, 6), "rows_quarantined": quarantined,
                      "rows_extracted": extracted,
                      "threshold": source.max_invalid_fraction})

    @dg.asset(
        key=catalog_asset_key, deps=[staged_asset_key], partitions_def=partitions,
        group_name=group, pool=POOL, retry_policy=RETRY_POLICY, kinds={"api"}, tags=tags,
        description=f"{source.display_name} items in the catalog (`{source.catalog_data_source}`)"
                    ": staged items diffed against the catalog, new and changed ones uploaded "
                    "in batches with a checkpoint after each acknowledged batch.",
    )
    def catalog(context: dg.AssetExecutionContext, lake: ParquetLake,
                catalog: CatalogClient) -> dg.MaterializeResult:
        day = context.partition_key
        try:
            progress = upload_staged(
                context, source, lake, catalog, lake.partition_dir(source.data_type, day),
                lake.checkpoint_path(source.data_type, day), f"{source.data_type} {day}",
                observe=lambda meta: context.log_event(dg.AssetObservation(
                    asset_key=catalog_asset_key, partition=day, metadata=meta)))
        except (CatalogError, LakeError) as exc:
            raise _fail(source, exc) from None
        return dg.MaterializeResult(metadata=upload_metadata(progress))

    return [staged, schema_conforms, invalid_fraction, catalog]


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


def upload_staged(context: dg.OpExecutionContext | dg.AssetExecutionContext,
                  source: BladeSource, lake: ParquetLake, catalog: CatalogClient,
                  items_dir: str, checkpoint_path: str, label: str,
                  observe: Callable[[dict[str, Any]], None] | None = None,
                  ) -> ingest.UploadProgress:
    """Upload a staged items file, reporting progress in the run log (and to ``observe``)."""
    footer = lake.footer_metadata(items_dir)
    if footer is None:
        raise dg.Failure(description=f"[{label}] nothing staged at {items_dir}: materialize "
                         f"{staged_key(source).to_user_string()} first", allow_retries=False)
    pf = lake.parquet_file(items_dir)
    total = pf.metadata.num_rows if pf else 0
    checkpoint = ingest.Checkpoint.load(lake, checkpoint_path, footer.get("staged_id", ""),
                                        catalog.batch_size)
    if checkpoint.acknowledged:
        context.log.info(f"[{label}] resuming: {len(checkpoint.acknowledged)} batches already "
                         "acknowledged by the catalog are skipped")

    def on_progress(progress: ingest.UploadProgress) -> None:
        context.log.info(f"[{label}] {progress.summary()}")
        if observe:
            observe({"processed": progress.processed, "total": progress.total,
                     "batch": f"{progress.batch}/{progress.batches}",
                     "created": progress.created, "updated": progress.updated,
                     "unchanged": progress.unchanged, "rejected": progress.rejected,
                     "eta_seconds": round(progress.eta_seconds or 0.0, 1)})

    batches = ingest.rebatch(lake.iter_batches(items_dir, catalog.batch_size), catalog.batch_size)
    with paused_on_terminate(label):
        progress = ingest.upload(batches, total, source, catalog, checkpoint, on_progress)
    if progress.rejected:
        context.log.warning(f"[{label}] the catalog rejected {progress.rejected} items, e.g. "
                            f"{progress.rejected_items[:3]}")
    return progress
