"""CSV drops (``kind: csv`` in sources.yaml): the landing folders, and the rows landed from them
read as a table.

Files land in ``<landing_uri>/<folder>/`` (a local path or ``s3://bucket/prefix``, like the
lake). ``sources.csv_landing`` parses each complete file once and keeps its rows in the
lake under ``landed/<folder>/<sha256[:16]>.parquet``; to the rest of the pipeline those files
are one table, ``landed.<folder>``, asked the same Databricks SQL as a warehouse table: this
resource translates each statement to DuckDB (sqlglot) and runs it over the landed Parquet
files as one pyarrow dataset (their schemas unified), streaming Arrow batches. Nothing landed
yet reads as an empty table.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from pydantic import PrivateAttr
from sqlglot import exp

from blade_pipeline.config.settings import DEMO_LANDING_URI
from blade_pipeline.config.sources import CsvDrop
from blade_pipeline.sources.reader import (
    ConnectionCheck,
    SourceQueryError,
    SourceReader,
    SourceUnavailableError,
    check_batch_sizes,
    sized_batches,
)
from blade_pipeline.storage.lake import FileEntry, LakeError, ParquetLake

LANDED = "landed"  # the lake folder (and SQL schema) of the landed rows
PROCESSED = "_processed"  # where a landed file is moved, under its landing folder
REJECTED = "_rejected"  # where a file that cannot be read at all is moved
MARKER = ".done"


@functools.lru_cache(maxsize=512)
def duckdb_sql(databricks_sql: str) -> tuple[str, tuple[str, ...]]:
    """``databricks_sql`` as DuckDB SQL, each ``landed.<folder>`` table renamed to the view
    this resource registers for it, and the folders named (markers ``:x`` become ``$x``)."""
    tree = sqlglot.parse_one(databricks_sql, read="databricks")
    folders: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if table.db.lower() == LANDED and table.name:
            if table.name not in folders:
                folders.append(table.name)
            table.replace(exp.Table(this=exp.to_identifier(_view(table.name)),
                                    alias=table.args.get("alias")))
    return tree.sql(dialect="duckdb"), tuple(folders)


@functools.lru_cache(maxsize=512)
def _output_names(databricks_sql: str) -> tuple[str, ...]:
    tree = sqlglot.parse_one(databricks_sql, read="databricks")
    return tuple(n for n in tree.named_selects if n != "*") if isinstance(
        tree, exp.Query) else ()


def _view(folder: str) -> str:
    return "landed__" + re.sub(r"\W", "_", folder)


class CsvDrops(SourceReader):
    """The landing folders of CSV sources and the rows landed from their files."""

    landing_uri: str = DEMO_LANDING_URI  # local path or s3://bucket/prefix
    s3_endpoint: str | None = None  # S3-compatible endpoint of an s3:// landing_uri
    s3_max_attempts: int = 6  # attempts per S3 request of an s3:// landing_uri (as the lake)
    lake: ParquetLake  # where landed rows are kept: the pipeline's lake

    _landing: ParquetLake | None = PrivateAttr(default=None)

    # ---- the landing folders ----------------------------------------------------------------
    @property
    def landing(self) -> ParquetLake:
        """The landing root, read and written like a lake (listing, moves, downloads)."""
        if self._landing is None:
            self._landing = ParquetLake(uri=self.landing_uri, s3_endpoint=self.s3_endpoint,
                                        s3_max_attempts=self.s3_max_attempts, role="landing")
        return self._landing

    @property
    def endpoint(self) -> str:
        return self.landing.where(self.landing.path())

    def folder(self, drop: CsvDrop) -> str:
        return self.landing.path(drop.folder)

    def dropped(self, drop: CsvDrop) -> tuple[list[FileEntry], set[str]]:
        """The files in ``drop``'s folder matching its pattern, and the names of the data
        files whose ``.done`` marker is there."""
        import fnmatch

        entries = self.landing.file_entries(self.folder(drop))
        markers = {e.name[:-len(MARKER)] for e in entries if e.name.endswith(MARKER)}
        files = [e for e in entries if not e.name.endswith(MARKER)
                 and fnmatch.fnmatch(e.name, drop.pattern)]
        return files, markers

    def landed_dir(self, folder: str, *parts: str) -> str:
        return self.lake.path(LANDED, folder, *parts)

    # ---- the landed rows as a table ---------------------------------------------------------
    def _run(self, sql: str, params: Mapping[str, Any] | None
             ) -> duckdb.DuckDBPyRelation | None:
        """The statement's result over the landed rows (None: nothing has landed yet in a
        folder it reads, so no row can answer it)."""
        text, folders = duckdb_sql(sql)
        con = duckdb.connect()
        for folder in folders:
            dataset = self.lake.dataset(self.landed_dir(folder))
            if dataset is None:
                return None
            con.register(_view(folder), dataset)
        try:
            return con.sql(text, params=dict(params or {}))
        except duckdb.Error as exc:
            raise SourceQueryError(f"the landed CSV rows ({self.lake.where(LANDED)}) could "
                                      f"not answer a query: {exc}") from None

    def stream_arrow(self, sql: str, params: Mapping[str, Any] | None = None,
                     batch_rows: int = 250_000,
                     first_batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        check_batch_sizes(batch_rows, first_batch_rows)
        result = self._run(sql, params)
        if result is not None:
            yield from sized_batches(result.to_arrow_reader(batch_rows), batch_rows,
                                     first_batch_rows)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        result = self._run(sql, params)
        if result is None:  # no rows, the statement's columns
            return pa.table({name: pa.array([], pa.null()) for name in _output_names(sql)})
        return result.to_arrow_table()

    def test_connection(self) -> ConnectionCheck:
        """The landing root answers: its folders are listed (as "catalogs")."""
        started = time.perf_counter()
        try:
            folders = self.landing.list_dirs(self.landing.path(), action="list")
        except LakeError as exc:
            raise SourceUnavailableError(str(exc)) from None
        return ConnectionCheck(self.endpoint, folders,
                               round(1000 * (time.perf_counter() - started), 1))
