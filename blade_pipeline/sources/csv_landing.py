"""Landing one dropped CSV file (``kind: csv``): parse it with the declared types, keep its rows
in the lake, quarantine the lines that do not parse, record it, move it (no Dagster in here).

* **Parsing** is DuckDB's CSV reader (streaming, parallel), with the source's dialect and no
  sniffing: each column of the file's header gets its declared type (an undeclared column is
  text), in the header's order. A line that does not parse — too many or too few fields, an
  unterminated quote, a value that is not of its column's type, bad encoding — is left out by
  the reader (``store_rejects``) and kept in the quarantine with the file name, its line number
  (the header is line 1) and the reason; the rest of the file continues. (An unterminated quote
  runs to the end of the file, as CSV reads it: the quarantined "line" is all of that.)
* **Rows** go to ``landed/<folder>/<sha256[:16]>.parquet`` (atomic: the lake's write), the
  quarantine to ``landed/<folder>/_quarantine/<sha256[:16]>.parquet``, the record to
  ``landed/<folder>/_files/<sha256>.json``, in that order; then the file (and its ``.done``
  marker) moves to ``<folder>/_processed/<sha256[:12]>-<name>``. Re-landing the same file after
  a crash redoes the same writes.
* **Duplicates**: a file whose content (sha256) was landed before under another name is not
  landed again: it is recorded as a duplicate of the first and moved.
* A file that cannot be read at all (no header, duplicate column names) moves to
  ``<folder>/_rejected/`` with the reason, and landing fails naming it.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.config.sources import BladeSource, CsvDrop
from blade_pipeline.sources.csv_drops import MARKER, PROCESSED, REJECTED, CsvDrops
from blade_pipeline.sources.reader import utc_naive

READ_BATCH_ROWS = 250_000
QUARANTINE_SCHEMA = pa.schema([
    ("file", pa.string()), ("line", pa.int64()), ("columns", pa.string()),
    ("reason", pa.string()), ("raw_line", pa.string()), ("sha256", pa.string())])


class LandingError(Exception):
    """A dropped file could not be landed at all; names the file and why."""


@dataclass
class LandedFile:
    """What landing one file did (the landed asset's metadata; the record in the lake)."""

    name: str
    sha256: str
    bytes: int
    rows: int = 0
    quarantined_lines: int = 0
    first_day: str | None = None  # of the watermark, over the rows landed
    last_day: str | None = None
    duplicate_of: str | None = None
    missing_columns: list[str] = field(default_factory=list)
    undeclared_columns: list[str] = field(default_factory=list)
    landed_at: str = ""
    run_id: str = ""
    moved_to: str = ""

    def record(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def header_of(path: str, drop: CsvDrop, name: str) -> list[str]:
    """The file's column names (its first record); LandingError when it has none or repeats
    one."""
    encoding = "utf-8-sig" if drop.encoding == "utf-8" else drop.encoding
    with open(path, newline="", encoding=encoding, errors="replace") as handle:
        header = next(csv.reader(handle, delimiter=drop.delimiter, quotechar=drop.quote,
                                 doublequote=drop.escape == drop.quote,
                                 escapechar=None if drop.escape == drop.quote else drop.escape),
                      None)
    if not header or not any(h.strip() for h in header):
        raise LandingError(f"{name}: no header line (the first line must name the columns)")
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LandingError(f"{name}: the header repeats column(s) {', '.join(repeated)}")
    return names


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_csv_sql(path: str, drop: CsvDrop, header: list[str]) -> str:
    """DuckDB's ``read_csv`` of ``path``: the header's columns with their declared types (text
    for undeclared ones), the source's dialect, rejected lines stored. An empty field is NULL,
    a quoted empty one (``""``) the empty string."""
    declared = drop.duckdb_types()
    columns = ", ".join(f"{_literal(n)}: {_literal(declared.get(n, 'VARCHAR'))}"
                        for n in header)
    encoding = {"utf-8": "utf-8", "utf-16": "utf-16", "latin-1": "latin-1"}[drop.encoding]
    return (f"SELECT * FROM read_csv({_literal(path)}, header = true, auto_detect = false, "
            f"columns = {{{columns}}}, delim = {_literal(drop.delimiter)}, "
            f"quote = {_literal(drop.quote)}, escape = {_literal(drop.escape)}, "
            f"encoding = {_literal(encoding)}, allow_quoted_nulls = false, "
            "store_rejects = true, strict_mode = true)")


class _Days:
    """The first and last day of the watermark over the batches seen."""

    def __init__(self, column: str):
        self.column, self.low, self.high = column, None, None

    def see(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        bounds = pc.min_max(batch.column(self.column))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        return batch

    def day(self, value: dt.datetime | None) -> str | None:
        return value.date().isoformat() if value is not None else None


def _quarantine(con: duckdb.DuckDBPyConnection, name: str, sha: str) -> pa.Table:
    """The rejected lines, one row per line (its reasons joined)."""
    return con.sql(
        "SELECT ? AS file, CAST(line AS BIGINT) AS line, "
        "string_agg(DISTINCT column_name, ', ' ORDER BY column_name) AS columns, "
        "string_agg(error_type || ': ' || error_message, '; ' ORDER BY column_idx) AS reason, "
        "first(csv_line) AS raw_line, ? AS sha256 FROM reject_errors GROUP BY line "
        "ORDER BY line", params=[name, sha]).to_arrow_table().cast(QUARANTINE_SCHEMA)


def land_file(drops: CsvDrops, source: BladeSource, path: str, run_id: str) -> LandedFile:
    """Land the dropped file at ``path`` (in ``source``'s landing folder); see the module doc."""
    drop = source.csv
    assert drop is not None
    lake, landing = drops.lake, drops.landing
    name = path.rsplit("/", 1)[-1]
    with landing.local_file(path) as local:
        sha = sha256_of(local)
        size = _size(local)
        record_path = drops.landed_dir(drop.folder, "_files", f"{sha}.json")
        earlier = lake.read_json(record_path)
        target = f"{drops.folder(drop)}/{PROCESSED}/{sha[:12]}-{name}"
        if earlier is not None and earlier["name"] == name and not landing.exists(target):
            landed = LandedFile(**earlier)  # landed, not moved yet: the run that did it died
        elif earlier is not None:  # this content landed before: a duplicate
            landed = LandedFile(name=name, sha256=sha, bytes=size,
                                duplicate_of=earlier["name"])
            if landing.exists(target):  # the same name again: keep both copies
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
                target = f"{drops.folder(drop)}/{PROCESSED}/{sha[:12]}-{stamp}-{name}"
        else:
            try:
                landed = _land(drops, source, local, name, sha, size)
            except LandingError as exc:
                target = f"{drops.folder(drop)}/{REJECTED}/{sha[:12]}-{name}"
                _move(drops, path, target)
                raise LandingError(f"{exc}; the file was moved to {landing.where(target)}"
                                   ) from None
    landed.landed_at = landed.landed_at or dt.datetime.now(dt.UTC).isoformat()
    landed.run_id = landed.run_id or run_id
    landed.moved_to = landing.where(target)
    if landed.duplicate_of is None:
        lake.write_json(record_path, landed.record())
    _move(drops, path, target)
    return landed


def _size(path: str) -> int:
    import os

    return os.path.getsize(path)


def _move(drops: CsvDrops, path: str, target: str) -> None:
    """Move the file and its ``.done`` marker (if any) to ``target``."""
    landing = drops.landing
    landing.move(path, target)
    if landing.exists(path + MARKER):
        landing.move(path + MARKER, target + MARKER)


def _land(drops: CsvDrops, source: BladeSource, local: str, name: str, sha: str,
          size: int) -> LandedFile:
    drop = source.csv
    assert drop is not None
    header = header_of(local, drop, name)
    declared = drop.columns
    landed = LandedFile(
        name=name, sha256=sha, bytes=size,
        missing_columns=[c for c in declared if c not in header],
        undeclared_columns=[c for c in header if c not in declared])
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")  # a timestamp without an offset is UTC
    try:
        reader = con.sql(read_csv_sql(local, drop, header)).to_arrow_reader(READ_BATCH_ROWS)
    except duckdb.Error as exc:
        raise LandingError(f"{name}: DuckDB cannot read it as CSV: {exc}") from None
    days = _Days(source.watermark_column) if source.watermark_column in header else None

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if batch.num_rows:
                batch = utc_naive(batch)
                yield days.see(batch) if days is not None else batch

    lake = drops.lake
    directory = drops.landed_dir(drop.folder)
    try:
        written = lake.write_parquet(directory, utc_naive(reader.schema.empty_table()).schema,
                                     batches(),
                                     name=f"{sha[:16]}.parquet")
    except duckdb.Error as exc:
        raise LandingError(f"{name}: DuckDB failed while reading it: {exc}") from None
    quarantine = _quarantine(con, name, sha)
    if quarantine.num_rows:
        lake.write_parquet(drops.landed_dir(drop.folder, "_quarantine"), QUARANTINE_SCHEMA,
                           [quarantine], name=f"{sha[:16]}.parquet")
    landed.rows, landed.quarantined_lines = written.rows, quarantine.num_rows
    if days is not None:
        landed.first_day, landed.last_day = days.day(days.low), days.day(days.high)
    return landed


def quarantined_lines(drops: CsvDrops, drop: CsvDrop, sha: str) -> pa.Table | None:
    """The quarantined lines of the landed file ``sha`` (None: none)."""
    directory = drops.landed_dir(drop.folder, "_quarantine")
    path = f"{directory}/{sha[:16]}.parquet"
    if not drops.lake.exists(path):
        return None
    import pyarrow.parquet as pq

    with drops.lake.errors("read", path):
        return pq.read_table(path, filesystem=drops.lake.filesystem)
