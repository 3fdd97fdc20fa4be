"""The metadata the assets and jobs attach to their results (tables, schemas, figures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow as pa

from blade_pipeline.steps import day_checks, uploading
from blade_pipeline.steps.schema_policy import RunSchema, SchemaPlan
from blade_pipeline.steps.staging import StageResult


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no valid rows_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row[c]).replace("|", "\\|").replace("\n", " ")[:60] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def range_stage_metadata(results: dict[str, StageResult], seconds: float,
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
        meta["dagster/column_schema"] = table_schema(raw_schema)
    return meta


def stage_metadata(result: StageResult, raw_schema: pa.Schema | None) -> dict[str, Any]:
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
        "preview": dg.MetadataValue.md(markdown_table(result.preview)),
    }
    if raw_schema is not None:
        meta["dagster/column_schema"] = table_schema(raw_schema)
    return meta


def schema_version_metadata(plan: SchemaPlan, run: RunSchema) -> dict[str, Any]:
    """The staged asset's schema version, the expected one, and the changes between them
    with the policy's decision on each."""
    return {"schema_version": run.version.version, "schema_version_new": run.new,
            "schema_expected_version": (run.version.version if run.adopted or plan.expected is None
                                        else plan.expected),
            "schema_changes": dg.MetadataValue.json([d.describe() for d in plan.decisions])}


def check_metadata(outcome: day_checks.CheckOutcome) -> dict[str, Any]:
    return {k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
            for k, v in outcome.metadata.items()}


def upload_metadata(progress: uploading.UploadProgress) -> dict[str, Any]:
    return {
        "items_total": progress.total, "created": progress.created,
        "updated": progress.updated, "unchanged": progress.unchanged,
        "rejected": progress.rejected, "skipped_by_checkpoint": progress.skipped,
        "kept_newer_in_catalog": progress.stale,
        "batches": progress.batches, "seconds": round(progress.seconds, 3),
        "items_per_second": round(progress.items_per_second),
        "rejected_items": dg.MetadataValue.json(progress.rejected_items[:20]),
    }


class UploadReport:
    """The run log's lines (and asset observations) of an upload: what a resumed attempt skips,
    progress after every acknowledged batch, what the catalog rejected."""

    def __init__(self, context: dg.OpExecutionContext | dg.AssetExecutionContext, label: str,
                 observe: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.context, self.label, self.observe = context, label, observe

    def on_start(self, files: list[uploading.StagedFile]) -> None:
        resumed = [f for f in files if f.checkpoint.done]
        if resumed:
            self.context.log.info(
                f"[{self.label}] resuming: {sum(f.checkpoint.done for f in resumed)} items of "
                f"{len(resumed)} staged file(s) already acknowledged by the catalog are skipped")

    def on_progress(self, progress: uploading.UploadProgress) -> None:
        self.context.log.info(f"[{self.label}] {progress.summary()}")
        if self.observe:
            self.observe({"processed": progress.processed, "total": progress.total,
                          "batch": f"{progress.batch}/{progress.batches}",
                          "days_done": f"{progress.files_done}/{progress.files}",
                          "created": progress.created, "updated": progress.updated,
                          "unchanged": progress.unchanged, "rejected": progress.rejected,
                          "eta_seconds": round(progress.eta_seconds or 0.0, 1)})

    def finished(self, progress: uploading.UploadProgress, kept_in: str = "") -> None:
        if progress.rejected:
            self.context.log.warning(
                f"[{self.label}] the catalog rejected {progress.rejected} items, e.g. "
                f"{progress.rejected_items[:3]}"
                + (f"; they are kept with the catalog's reasons under {kept_in} (once the "
                   "cause is fixed, re-run the day: the upload sends them again)"
                   if kept_in else ""))
