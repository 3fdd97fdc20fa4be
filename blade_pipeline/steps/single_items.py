"""Single items by id (the item job): the pipeline's steps applied to a handful of rows.

The rows come through the same extract, duplicate-key lookup, Pandera validation, item builder
and catalog diff as a partition; each changed item is then uploaded on its own (the catalog's
single-item API, as the seed flow does), and the outcome is reported per item.
"""

from __future__ import annotations

from typing import Any

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import SourceReader
from blade_pipeline.steps import extract, uploading
from blade_pipeline.steps.items import IngestRun, ItemBuilder
from blade_pipeline.steps.validation import PartitionValidator
from blade_pipeline.storage.catalog import Catalog


class ItemIdError(ValueError):
    """An item id that does not belong to the data type asked for."""


def _keys(source: BladeSource, item_ids: list[str]) -> dict[str, str]:
    """item_id -> primary key; ids of another data type are refused (:class:`ItemIdError`)."""
    prefix = f"{source.item_id_prefix}-"
    wrong = [i for i in item_ids if not i.startswith(prefix) or i == prefix]
    if wrong:
        raise ItemIdError(f"ids must look like {prefix}<{source.primary_key}>; not: "
                          f"{', '.join(wrong[:10])}")
    return {i: i[len(prefix):] for i in dict.fromkeys(item_ids)}


def ingest_items(source: BladeSource, item_ids: list[str], warehouse: SourceReader,
                 catalog: Catalog, run: IngestRun) -> dict[str, dict[str, Any]]:
    """Fetch, validate and upload single items; returns item_id -> {status, ...}."""
    keys = _keys(source, item_ids)
    pk = source.primary_key
    sql = source_sql.rows_by_keys(source)
    params = {"keys": list(keys.values())}
    report: dict[str, dict[str, Any]] = {i: {"status": "not found in warehouse"} for i in keys}
    validator = PartitionValidator(source, extract.duplicate_keys(warehouse, source, sql, params))
    builder = ItemBuilder(source, run)
    for batch in extract.extract(warehouse, sql, params):
        outcome = validator.validate(batch)
        prefix = f"{source.item_id_prefix}-"
        for key, reason in zip(outcome.quarantined.column(pk).to_pylist(),
                               outcome.quarantined.column("_reason").to_pylist(), strict=True):
            if key is not None and report.get(prefix + key, {}).get("status") != "valid":
                report[prefix + key] = {"status": "invalid", "reason": reason}
        items = builder.build(outcome.rows, outcome.keep)
        known = catalog.lookup_known(items.column("item_id"))
        todo = set(uploading.changed_items(items, known).todo.column("item_id").to_pylist())
        for item in items.to_pylist():
            item_id = item["item_id"]
            if item_id not in todo:
                same = known.hashes.get(item_id) == item["content_hash"]
                report[item_id] = {"status": "unchanged" if same else uploading.KEPT_NEWER,
                                   "content_hash": item["content_hash"]}
                continue
            answer = catalog.upload_item(item, source.catalog_data_source, keep_newer=True)
            status = answer.get("status", "uploaded")
            report[item_id] = {"status": uploading.KEPT_NEWER if status == "stale" else status,
                               "version": answer.get("version"),
                               "content_hash": item["content_hash"]}
    return report
