"""What the catalog and the runs must hold, derived independently of the pipeline's code."""

from __future__ import annotations

from typing import Any

import dagster as dg
import duckdb

from blade_pipeline.config.sources import source_for
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.storage.catalog import CatalogClient

#: Invalid kinds that make a row unusable (a duplicate key still yields one item per key).
NON_KEY_INVALID = ("bad_enum", "negative_value", "missing_key", "wrong_shape")


def expected_ids(reference: duckdb.DuckDBPyConnection, data_type: str, day: str) -> set[str]:
    """Item ids of the day's rows that are valid or only repeat a key (one item per key),
    from the generator's rows rebuilt in-process (``reference``) and its invalid-row plan."""
    source = source_for(data_type)
    pk = source.primary_key
    cur = reference.cursor()
    cur.register("invalid", generator.invalid_rows(reference, data_type))
    rows = cur.execute(
        f"SELECT DISTINCT t.{pk} FROM (SELECT *, row_number() OVER () - 1 AS row_index "
        f"FROM blade.{generator.TABLES[data_type]}) t "
        "LEFT JOIN invalid i ON i.row_index = t.row_index "
        f"WHERE CAST(t.last_modified AS DATE) = $day AND t.{pk} IS NOT NULL "
        "AND (i.kind IS NULL OR i.kind NOT IN $kinds)",
        {"day": day, "kinds": list(NON_KEY_INVALID)}).fetchall()
    return {f"{source.item_id_prefix}-{r[0]}" for r in rows}


def readiness_ids_to_ask(reference: duckdb.DuckDBPyConnection) -> tuple[list[str], str]:
    """Item ids for the item job: three valid readiness reports, one id the warehouse lacks
    (``READY-999999999``) and one of an invalid row (its key is returned too)."""
    invalid = generator.invalid_rows(reference, "readiness").to_pylist()
    bad_key = next(r["key"] for r in invalid if r["kind"] == "bad_enum")
    bad_keys = {r["key"] for r in invalid}
    good = [r[0] for r in reference.execute(
        "SELECT report_id FROM blade.blade_readiness_data WHERE report_id IS NOT NULL "
        "ORDER BY report_id LIMIT 50").fetchall() if r[0] not in bad_keys][:3]
    return [f"READY-{k}" for k in good] + ["READY-999999999", f"READY-{bad_key}"], bad_key


def materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    """Metadata of the run's one materialization of ``key``."""
    [event] = [e.event_specific_data.materialization for e in result.all_events
               if e.event_type_value == "ASSET_MATERIALIZATION"
               and e.event_specific_data.materialization.asset_key == key]
    return {k: v.value for k, v in event.metadata.items()}


def catalog_items(client: CatalogClient, data_source: str) -> list[dict[str, Any]]:
    """Every item of ``data_source`` in the catalog (id order), pages followed."""
    items, after = [], None
    while True:
        page = client.list_items(data_source, after=after, limit=1000)
        items += page["items"]
        after = page.get("next")
        if not after:
            return items
