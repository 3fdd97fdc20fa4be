"""Reconciliation of a day: the warehouse, the lake and the catalog agree (no Dagster here).

Per day of a data type:

* **warehouse = staged + quarantined**: the rows the warehouse holds for the day now, against
  the rows the staged partition was built from (its footer: valid items + quarantined rows). A
  difference means the warehouse changed since the day was staged (rows moved to another day,
  deleted, added): re-run the day. Reported as a WARN (the change sensor usually follows).
* **every staged item is in the catalog with its content hash**: the staged ids go to the
  catalog's bulk lookup (chunked, ``Catalog.lookup_known``), and the same diff the upload uses
  counts what it would send again (missing, or another hash), not counting keys whose catalog
  row is newer (another day holds the key with a later row: newest row wins). Both sides are
  also summed into an order-independent digest (the sum mod 2**64 of each item's content hash
  read as a 64-bit number; the keys held as a newer row left out) so the numbers can be
  compared across tools. Any missing or
  differing item is an ERROR: re-run the day (its upload sends exactly those).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.steps.uploading import changed_items
from blade_pipeline.storage.catalog import Catalog
from blade_pipeline.storage.lake import ParquetLake

NAME = "reconciled"


@dataclass(frozen=True)
class Reconciliation:
    """The numbers of one day (``warehouse_rows`` None: not asked)."""

    day: str
    warehouse_rows: int | None
    staged_valid: int
    quarantined: int
    in_catalog_same: int
    newer_in_catalog: int
    missing_or_different: int
    staged_digest: str
    catalog_digest: str
    sample: list[str]

    @property
    def catalog_ok(self) -> bool:
        return self.missing_or_different == 0

    @property
    def warehouse_ok(self) -> bool:
        return self.warehouse_rows is None or (
            self.warehouse_rows == self.staged_valid + self.quarantined)

    def description(self) -> str:
        parts = []
        if not self.catalog_ok:
            parts.append(f"{self.missing_or_different} of {self.staged_valid} staged items are "
                         f"missing from the catalog or differ (e.g. {', '.join(self.sample)}): "
                         "re-run the day")
        if not self.warehouse_ok:
            parts.append(f"the warehouse holds {self.warehouse_rows} rows for the day, the "
                         f"staged partition was built from {self.staged_valid} valid + "
                         f"{self.quarantined} quarantined: the warehouse changed since, re-run "
                         "the day")
        if parts:
            return "; ".join(parts)
        return (f"{self.staged_valid} staged items in the catalog with their hashes"
                + (f" ({self.newer_in_catalog} held as a newer row)"
                   if self.newer_in_catalog else "")
                + (f"; warehouse {self.warehouse_rows} rows = {self.staged_valid} staged + "
                   f"{self.quarantined} quarantined" if self.warehouse_rows is not None else ""))

    def metadata(self) -> dict[str, object]:
        return {"warehouse_rows": self.warehouse_rows, "staged_valid": self.staged_valid,
                "quarantined": self.quarantined, "in_catalog_same": self.in_catalog_same,
                "newer_in_catalog": self.newer_in_catalog,
                "missing_or_different": self.missing_or_different,
                "staged_digest": self.staged_digest, "catalog_digest": self.catalog_digest,
                "sample_missing": self.sample}


def digest(hashes: pa.Array | pa.ChunkedArray) -> str:
    """Order-independent digest of hex content hashes: the sum mod 2**64 of their first 64
    bits, as 16 hex digits."""
    if len(hashes) == 0:
        return f"{0:016x}"
    prefixes = pc.utf8_slice_codeunits(hashes, 0, 16).to_pylist()
    words = np.frombuffer(bytes.fromhex("".join(prefixes)), dtype=">u8").astype(np.uint64)
    return f"{int(words.sum(dtype=np.uint64)):016x}"


def reconcile_day(lake: ParquetLake, source: BladeSource, catalog: Catalog, day: str,
                  warehouse_rows: int | None) -> Reconciliation | None:
    """The day's reconciliation, or None when nothing is staged for it."""
    directory = lake.partition_dir(source.data_type, day)
    parquet = lake.parquet_file(directory)
    if parquet is None:
        return None
    try:
        footer = lake.blade_footer(parquet)
        with lake.errors("read", directory):
            staged = parquet.read(columns=["item_id", "content_hash", "last_modified"])
    finally:
        parquet.close(force=True)
    known = catalog.lookup_known(staged.column("item_id"))
    diff = changed_items(staged, known)
    # all but the keys the catalog holds with a newer row (None: it knows none of them)
    compared = staged if diff.send is None else staged.filter(pa.array(diff.send | diff.same))
    index = pc.index_in(compared.column("item_id"),
                        value_set=pa.array(list(known.hashes), pa.string()))
    catalog_hashes = pc.take(pa.array(list(known.hashes.values()), pa.string()),
                             index).drop_null()
    return Reconciliation(
        day=day, warehouse_rows=warehouse_rows, staged_valid=staged.num_rows,
        quarantined=int(footer.get("quarantined", 0)), in_catalog_same=diff.unchanged,
        newer_in_catalog=diff.stale, missing_or_different=diff.todo.num_rows,
        staged_digest=digest(compared.column("content_hash")),
        catalog_digest=digest(catalog_hashes),
        sample=diff.todo.column("item_id").slice(0, 5).to_pylist())
