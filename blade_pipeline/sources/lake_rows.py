"""Rows the pipeline keeps in its lake, read as tables with the same Databricks SQL as a
warehouse table: the landed rows of CSV drops (``landed.<folder>``) and the drained rows of push
sources (``pushed.<source>``).

A statement is translated to DuckDB (sqlglot) with each ``<schema>.<name>`` table renamed to a
view over the Parquet files under ``<lake>/<schema>/<name>/`` (one pyarrow dataset, their
schemas unified; files and folders starting with ``_`` or ``.`` are not rows), and streamed
as Arrow batches. A table with no file yet reads as empty.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from blade_pipeline.sources.reader import (
    SourceQueryError,
    SourceReader,
    check_batch_sizes,
    sized_batches,
)
from blade_pipeline.storage.lake import ParquetLake


def _view(schema: str, name: str) -> str:
    return f"{schema}__" + re.sub(r"\W", "_", name)


@functools.lru_cache(maxsize=512)
def duckdb_sql(databricks_sql: str, schema: str) -> tuple[str, tuple[str, ...]]:
    """``databricks_sql`` as DuckDB SQL, each ``<schema>.<name>`` table renamed to the view
    registered for it, and the names it reads (markers ``:x`` become ``$x``)."""
    tree = sqlglot.parse_one(databricks_sql, read="databricks")
    names: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if table.db.lower() == schema and table.name:
            if table.name not in names:
                names.append(table.name)
            table.replace(exp.Table(this=exp.to_identifier(_view(schema, table.name)),
                                    alias=table.args.get("alias")))
    return tree.sql(dialect="duckdb"), tuple(names)


@functools.lru_cache(maxsize=512)
def _output_names(databricks_sql: str) -> tuple[str, ...]:
    tree = sqlglot.parse_one(databricks_sql, read="databricks")
    return tuple(n for n in tree.named_selects if n != "*") if isinstance(
        tree, exp.Query) else ()


class LakeRowsReader(SourceReader):
    """A reader of the lake's ``<SCHEMA>/<name>/`` row files (subclasses name the schema)."""

    SCHEMA: ClassVar[str]
    WHAT: ClassVar[str]  # how errors name the rows ("the landed CSV rows")

    lake: ParquetLake  # where the rows are kept: the pipeline's lake

    def rows_dir(self, name: str, *parts: str) -> str:
        return self.lake.path(self.SCHEMA, name, *parts)

    def _run(self, sql: str, params: Mapping[str, Any] | None
             ) -> duckdb.DuckDBPyRelation | None:
        """The statement's result (None: a table it reads holds no file yet, so no row can
        answer it)."""
        text, names = duckdb_sql(sql, self.SCHEMA)
        con = duckdb.connect()
        for name in names:
            dataset = self.lake.dataset(self.rows_dir(name))
            if dataset is None:
                return None
            con.register(_view(self.SCHEMA, name), dataset)
        try:
            return con.sql(text, params=dict(params or {}))
        except duckdb.Error as exc:
            raise SourceQueryError(f"{self.WHAT} ({self.lake.where(self.SCHEMA)}) could not "
                                   f"answer a query: {exc}") from None

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
