"""Jobs: one partitioned asset job per data type, the ad-hoc query job and the item job.

* ``blade_<type>_job``: staged + checks + catalog for one day or a range of days in one run
  (what sensors, schedules and backfills launch).
* ``blade_query_job`` (run config ``{data_type, where, limit}``): a SQL filter over a data type,
  through the same extract -> validate -> stage -> upload path, staged under
  ``queries/<run_id>/`` in the lake.
* ``blade_item_job`` (run config ``{data_type, item_ids}``): ingest single items by id; items
  the catalog already holds with the same hash are skipped; the result is reported per item.
"""

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from blade_pipeline.config.sources import BladeSource, SourcesFileError, source_for
from blade_pipeline.defs.failures import POOL, RETRY_POLICY, paused_on_terminate, step_failure
from blade_pipeline.defs.keys import catalog_key, run_label, staged_key
from blade_pipeline.defs.metadata import UploadReport, stage_metadata, upload_metadata
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.defs.reconciliation_check import reconcile_days
from blade_pipeline.sources.reader import SourceError, SourceReader
from blade_pipeline.sources.user_filters import UnsafeFilterError, select_sql
from blade_pipeline.steps import extract, reconciliation, single_items, staging, uploading
from blade_pipeline.steps.items import IngestRun
from blade_pipeline.storage.catalog import Catalog, CatalogError
from blade_pipeline.storage.lake import LakeError, ParquetLake

MAX_ITEMS_PER_RUN = 1_000

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def build_partition_job(source: BladeSource) -> "UnresolvedAssetJobDefinition":
    """Staged + catalog (and the staged asset's checks) of one source, one day per run."""
    return dg.define_asset_job(
        name=f"blade_{source.data_type}_job",
        selection=dg.AssetSelection.assets(staged_key(source), catalog_key(source)),
        partitions_def=daily_partitions(source),
        description=f"{source.display_name}: extract, validate, stage and upload a day or a "
                    "range of days (one run per range).",
        tags={"blade/data_type": source.data_type},
    )


class ReconcileConfig(dg.Config):
    """Days to reconcile: ``first`` .. ``last`` (``YYYY-MM-DD``; ``last`` defaults to
    ``first``)."""

    first: str
    last: str | None = None


def build_reconcile_job(source: BladeSource) -> dg.JobDefinition:
    """The ``reconciled`` check of one source over days already ingested, on its own (the
    nightly schedule; or by hand, e.g. after a catalog restore): one evaluation per day, on the
    catalog asset's partition, as the check in the source's job reports it. (Dagster 1.13 runs
    a partitioned check only with its asset, so this is an op job logging the evaluations.)"""

    @dg.op(name=f"reconcile_{source.data_type}", tags={"blade/data_type": source.data_type},
           required_resource_keys={"lake", "catalog", source.resource_key})
    def reconcile(context: dg.OpExecutionContext, config: ReconcileConfig) -> None:
        lake: ParquetLake = context.resources.lake
        catalog: Catalog = context.resources.catalog
        warehouse: SourceReader = getattr(context.resources, source.resource_key)
        first = dt.date.fromisoformat(config.first)
        last = dt.date.fromisoformat(config.last or config.first)
        days = [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
        failed = 0
        for day, evaluation in reconcile_days(source, lake, catalog, warehouse, days).items():
            failed += not evaluation["passed"]
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=catalog_key(source), check_name=reconciliation.NAME, partition=day,
                blocking=False, **evaluation))
        context.log.info(f"[{run_label(source, days)}] reconciled {len(days)} day(s): "
                         f"{len(days) - failed} agree, {failed} do not")

    @dg.job(name=f"blade_{source.data_type}_reconcile_job",
            tags={"blade/data_type": source.data_type},
            description=f"{source.display_name}: reconcile ingested days (warehouse = staged + "
                        "quarantined; every staged item in the catalog with its hash).")
    def reconcile_job() -> None:
        reconcile()

    return reconcile_job


def _source(data_type: str) -> BladeSource:
    """A Databricks source of sources.yaml (these jobs read the ``warehouse`` resource)."""
    try:
        source = source_for(data_type)
    except SourcesFileError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if source.kind != "databricks":
        raise dg.Failure(description=f"[{data_type}] is read from {source.table_label}: the "
                         "query and item jobs read Databricks sources only (materialize the "
                         "source's assets instead)", allow_retries=False)
    return source


class QueryConfig(dg.Config):
    """Ad-hoc query: rows of one data type matching a SQL filter."""

    data_type: str = Field(description="maintenance, sortie, supply, readiness, ...")
    where: str | None = Field(default=None, description="SQL filter, e.g. priority = 'HIGH'")
    limit: int | None = Field(default=None, ge=1, description="at most this many rows")


@dg.op(retry_policy=RETRY_POLICY, pool=POOL,
       description="Extract the filtered rows, validate, stage under queries/<run_id>/, upload.")
def run_query(context: dg.OpExecutionContext, config: QueryConfig,
              warehouse: SourceReader, lake: ParquetLake,
              catalog: Catalog) -> dg.Output[dict]:
    source = _source(config.data_type)
    label = f"query {source.data_type}"
    try:
        sql = select_sql(source, config.where, config.limit, order_by_key=True)
    except UnsafeFilterError as exc:
        raise dg.Failure(description=f"[{label}] filter rejected: {exc}",
                         allow_retries=False) from None
    run_id = context.run.run_id
    items_dir = lake.path("queries", run_id, "items")
    context.log.info(f"[{label}] {sql}")
    try:
        staged = staging.stage(source, extract.extract(warehouse, sql, None), lake, items_dir,
                              lake.path("queries", run_id, "quarantine"),
                              IngestRun.now(run_id),
                              duplicates=extract.duplicate_keys(warehouse, source, sql, None))
        report = UploadReport(context, label)
        with paused_on_terminate(label):
            progress = uploading.upload_file(lake, source, catalog, "query", items_dir,
                                          lake.path("queries", run_id, "checkpoint.json"),
                                          on_start=report.on_start,
                                          on_progress=report.on_progress)
        if progress is None:
            raise dg.Failure(description=f"[{label}] nothing staged at {items_dir}",
                             allow_retries=False)
        report.finished(progress)
    except (SourceError, CatalogError, LakeError) as exc:
        raise step_failure(label, exc) from None
    metadata = {**stage_metadata(staged, None), **upload_metadata(progress),
                "filter": config.where or "", "limit": config.limit or 0}
    return dg.Output({"staged": staged.valid, "uploaded": progress.created + progress.updated},
                     metadata=metadata)


@dg.job(description="Ad-hoc query job: a SQL filter over one BLADE data type, ingested.",
        tags={"blade/kind": "query"})
def blade_query_job() -> None:
    run_query()


class ItemsConfig(dg.Config):
    """Single-item ingest: BLADE item ids (``PREFIX-<key>``) of one data type."""

    data_type: str = Field(description="maintenance, sortie, supply, readiness, ...")
    item_ids: list[str] = Field(min_length=1, max_length=MAX_ITEMS_PER_RUN)


@dg.op(retry_policy=RETRY_POLICY, pool=POOL,
       description="Ingest single items by id; skip those the catalog holds unchanged.")
def ingest_item_ids(context: dg.OpExecutionContext, config: ItemsConfig,
                    warehouse: SourceReader, catalog: Catalog) -> dg.Output[dict]:
    source = _source(config.data_type)
    try:
        report = single_items.ingest_items(source, config.item_ids, warehouse, catalog,
                                           IngestRun.now(context.run.run_id))
    except single_items.ItemIdError as exc:
        raise dg.Failure(description=f"[items {source.data_type}] {exc}",
                         allow_retries=False) from None
    except (SourceError, CatalogError) as exc:
        raise step_failure(f"items {source.data_type}", exc) from None
    for item_id, outcome in report.items():
        context.log.info(f"[items {source.data_type}] {item_id}: {outcome}")
    counts: dict[str, int] = {}
    for outcome in report.values():
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    rows = [dg.TableRecord({"item_id": i, "status": o["status"],
                            "detail": str(o.get("reason") or o.get("version") or "")})
            for i, o in report.items()]
    schema = dg.TableSchema(columns=[dg.TableColumn("item_id"), dg.TableColumn("status"),
                                     dg.TableColumn("detail")])
    return dg.Output(report, metadata={"counts": dg.MetadataValue.json(counts),
                                       "items": dg.MetadataValue.table(rows, schema=schema)})


@dg.job(description="Single-item ingest: BLADE items by id, skipping unchanged ones.",
        tags={"blade/kind": "items"})
def blade_item_job() -> None:
    ingest_item_ids()
