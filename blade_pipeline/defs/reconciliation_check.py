"""The ``reconciled`` check of a catalog asset, per day, and its evaluation (shared with the
nightly reconciliation job): the Dagster side of ``reconciliation.py``."""

from typing import Any

import dagster as dg

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.keys import catalog_key, run_label
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.sources.reader import SourceError, SourceReader
from blade_pipeline.steps import day_checks, extract, reconciliation
from blade_pipeline.storage.catalog import Catalog, CatalogError
from blade_pipeline.storage.lake import LakeError, ParquetLake


def build_reconciliation_check(source: BladeSource) -> dg.AssetChecksDefinition:
    """``reconciled`` on the catalog asset, per day (``reconciliation.py``): the warehouse's
    rows = staged + quarantined (WARN otherwise), every staged item in the catalog with its
    hash (ERROR otherwise). Runs after the upload in the source's job, and on its own in the
    nightly reconciliation job; a warehouse or catalog it cannot reach is a failed (WARN)
    evaluation, not a failed run."""
    catalog_asset_key = catalog_key(source)

    @dg.asset_check(
        asset=catalog_asset_key, name=reconciliation.NAME, blocking=False,
        partitions_def=daily_partitions(source),
        required_resource_keys={"lake", "catalog", source.resource_key},
        description="Source rows of the day = staged + quarantined; every staged item is in "
                    "the catalog with its content hash (bulk lookup; counts and an "
                    "order-independent digest in the metadata).")
    def reconciled(context: dg.AssetCheckExecutionContext):
        resources = context.resources
        lake: ParquetLake = resources.lake
        catalog: Catalog = resources.catalog
        warehouse: SourceReader = getattr(resources, source.resource_key)
        op_context = context.op_execution_context
        days = list(op_context.partition_keys)
        for day, evaluation in reconcile_days(source, lake, catalog, warehouse, days).items():
            if op_context.has_partition_key:
                yield dg.AssetCheckResult(**evaluation)
                return
            yield dg.AssetCheckEvaluation(asset_key=catalog_asset_key,
                                          check_name=reconciliation.NAME, partition=day,
                                          blocking=False, **evaluation)
        if not op_context.has_partition_key:
            yield dg.Output(None)

    return reconciled


def reconcile_days(source: BladeSource, lake: ParquetLake, catalog: Catalog,
                   warehouse: SourceReader, days: list[str]) -> dict[str, dict[str, Any]]:
    """The check's evaluation of each day: ``passed``, ``severity``, ``description``,
    ``metadata``."""
    label = run_label(source, days)
    try:
        counts = extract.rows_per_day(warehouse, source, days)
    except SourceError as exc:
        counts, unreachable = {}, f"warehouse not asked ({exc})"
    else:
        unreachable = ""
    out: dict[str, dict[str, Any]] = {}
    for day in days:
        try:
            result = reconciliation.reconcile_day(lake, source, catalog, day,
                                                  None if unreachable else counts.get(day, 0))
        except (CatalogError, LakeError) as exc:
            out[day] = {"passed": False, "severity": dg.AssetCheckSeverity.WARN,
                        "description": f"[{label}] could not reconcile {day}: {exc}"}
            continue
        if result is None:
            out[day] = {"passed": False, "severity": dg.AssetCheckSeverity.WARN,
                        "description": f"{day}: {day_checks.NOT_STAGED}"}
            continue
        out[day] = {
            "passed": result.catalog_ok and result.warehouse_ok,
            "severity": (dg.AssetCheckSeverity.ERROR if not result.catalog_ok
                         else dg.AssetCheckSeverity.WARN),
            "description": f"{day}: {result.description()}"
                           + (f"; {unreachable}" if unreachable else ""),
            "metadata": {k: dg.MetadataValue.json(v) if isinstance(v, list) else v
                         for k, v in result.metadata().items() if v is not None}}
    return out
