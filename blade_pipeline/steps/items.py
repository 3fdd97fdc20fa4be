"""Raw warehouse rows (Arrow) -> BLADE items (Arrow), vectorised in DuckDB.

One item per row (DESIGN §3): ``item_id`` = ``{prefix}-{primary key}``, ``data`` = the row as
canonical JSON, ``content_hash`` = sha256 of that text, and the run's ``metadata`` as a JSON
object; no Python loop per row. DuckDB reads the batch in place and writes every column
(``to_json``, on all cores); polars-hash hashes the text.

**Canonical form, version** :data:`HASH_VERSION` (in every item's metadata as
``hash_version``): DuckDB's ``to_json(struct_pack(...))`` of the row's columns in name order,
no whitespace; strings JSON-escaped, dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DD
HH:MM:SS[.ffffff]`` (trailing zeros of the fraction dropped), decimals and doubles as DuckDB
prints them; sha256 as lower-case hex. ``unit/test_item_canonical_form.py`` pins these bytes: a
DuckDB upgrade that changes them fails there, and a deliberate change bumps HASH_VERSION (every
item is then re-hashed and re-uploaded once, on purpose).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass

import duckdb
import polars as pl
import polars_hash as plh
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.sources.pushed_rows import TENANT_COLUMN

ITEM_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("data_type", pa.string(), nullable=False),
    pa.field("data", pa.string(), nullable=False),
    pa.field("classification", pa.string(), nullable=False),
    pa.field("last_modified", pa.timestamp("us"), nullable=False),
    pa.field("content_hash", pa.string(), nullable=False),
    pa.field("metadata", pa.string(), nullable=False),
])


@dataclass(frozen=True)
class IngestRun:
    """Who ingests: goes into every item's metadata."""

    run_id: str
    ingested_at: dt.datetime

    @classmethod
    def now(cls, run_id: str) -> IngestRun:
        return cls(run_id, dt.datetime.now(dt.UTC).replace(microsecond=0))


#: Version of the canonical ``data`` form that ``content_hash`` hashes (see the module doc).
HASH_VERSION = 1


def item_metadata(source: BladeSource, run: IngestRun, schema_version: int | None = None
                  ) -> str:
    """The metadata object shared by all items of a run, as JSON text (``schema_version``:
    the source's schema version the rows were read in, when versioned)."""
    wh = source.warehouse
    where: dict[str, str] = ({"warehouse_id": wh.warehouse_id, "catalog": wh.catalog}
                             if wh is not None else {})
    meta = {
        "source": source.kind, **where, "schema": source.location.schema_,
        "table": source.location.table,
        "ingested_at": run.ingested_at.isoformat(), "run_id": run.run_id,
        "hash_version": HASH_VERSION,
    }
    if schema_version is not None:
        meta["schema_version"] = schema_version
    return json.dumps(meta, separators=(",", ":"))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


KEEP_COLUMN = "__blade_keep"


def item_sql(source: BladeSource, columns: list[str]) -> str:
    """DuckDB SELECT turning relation ``raw`` (with ``columns``) into the per-row columns of
    BLADE items (``item_id``, ``data``, ``classification``, ``last_modified``; ``metadata`` too
    when the rows carry a tenant); when ``raw`` also has :data:`KEEP_COLUMN`, only the rows
    where it is true. The run's constant columns are added in Arrow (:meth:`ItemBuilder.build`)."""
    keep = KEEP_COLUMN in columns
    tenant = TENANT_COLUMN in columns
    columns = [c for c in columns if c not in (KEEP_COLUMN, TENANT_COLUMN)]
    struct = ", ".join(f"{_ident(c)} := {_ident(c)}" for c in sorted(columns))
    # a pushed row's tenant goes into its metadata, never into its data (nor its hash)
    metadata = (f", CASE WHEN {_ident(TENANT_COLUMN)} IS NULL THEN $metadata ELSE "
                "left($metadata, length($metadata) - 1) || ',\"tenant\":' || "
                f"CAST(to_json({_ident(TENANT_COLUMN)}) AS VARCHAR) || '}}' END AS metadata"
                if tenant else "")
    data = f"CAST(to_json(struct_pack({struct})) AS VARCHAR) AS data, "
    cls = source.classification
    classification = (f"coalesce(CAST({_ident(cls.column)} AS VARCHAR), $default_class)"
                      if cls.column and cls.column in columns else "$default_class")
    return (
        f"SELECT $prefix || '-' || CAST({_ident(source.primary_key)} AS VARCHAR) AS item_id, "
        f"{data}{classification} AS classification, "
        f"CAST({_ident(source.watermark_column)} AS TIMESTAMP) AS last_modified"
        f"{metadata} FROM raw" + (f" WHERE {_ident(KEEP_COLUMN)}" if keep else "")
    )


def sha256_hex(texts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Lower-case hex sha256 of each UTF-8 string, vectorised (Rust, SHA extensions when the
    CPU has them): ~3x faster than DuckDB's ``sha256`` and no Python loop."""
    frame = pl.DataFrame({"text": pl.from_arrow(texts)})
    hashed = frame.select(plh.col("text").chash.sha2_256())["text"]
    return hashed.to_arrow().cast(pa.string())


DUCKDB_CHUNK_ROWS = 16_384


def _chunked(raw: pa.RecordBatch | pa.Table, rows: int) -> pa.Table:
    """``raw`` as a table of chunks of at most ``rows`` rows (zero-copy slices): chunks let
    DuckDB spread the JSON encoding and hashing over every core."""
    batches = raw.to_batches() if isinstance(raw, pa.Table) else [raw]
    slices = [batch.slice(start, rows)
              for batch in batches for start in range(0, batch.num_rows, rows)]
    return pa.Table.from_batches(slices, schema=raw.schema)


class ItemBuilder:
    """Builds item batches for one source and run; one DuckDB connection per thread."""

    def __init__(self, source: BladeSource, run: IngestRun, schema_version: int | None = None):
        self.source = source
        self.params = {"prefix": source.item_id_prefix,
                       "default_class": source.classification.default,
                       "metadata": item_metadata(source, run, schema_version)}
        self._local = threading.local()

    def _con(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = duckdb.connect()
        return con

    def build(self, raw: pa.RecordBatch | pa.Table, keep: pa.BooleanArray | None = None
              ) -> pa.Table:
        """BLADE items (``ITEM_SCHEMA``) for the rows of ``raw`` (those where ``keep`` is
        true, if given: filtered while the items are built, without copying ``raw``)."""
        if keep is not None and not pc.any(keep).as_py():
            return ITEM_SCHEMA.empty_table()
        if raw.num_rows == 0:
            return ITEM_SCHEMA.empty_table()
        if isinstance(raw, pa.Table):
            [raw] = raw.combine_chunks().to_batches()
        if isinstance(keep, pa.ChunkedArray):
            keep = keep.combine_chunks()
        if keep is not None:
            raw = raw.append_column(KEEP_COLUMN, keep)
        con = self._con()
        sql = item_sql(self.source, raw.schema.names)
        con.register("raw", _chunked(raw, DUCKDB_CHUNK_ROWS))
        try:
            table = con.sql(sql, params={name: value for name, value in self.params.items()
                                         if f"${name}" in sql}).to_arrow_table()
        finally:
            con.unregister("raw")
        columns = dict(zip(table.column_names, table.columns, strict=True))
        columns["content_hash"] = sha256_hex(columns["data"])
        # the same value on every row: repeated in Arrow (a memcpy), not formatted per row
        columns["data_type"] = pa.repeat(pa.scalar(self.source.data_type), table.num_rows)
        if "metadata" not in columns:
            columns["metadata"] = pa.repeat(pa.scalar(self.params["metadata"]), table.num_rows)
        return pa.table([columns[name] for name in ITEM_SCHEMA.names],
                        names=ITEM_SCHEMA.names).cast(ITEM_SCHEMA)
