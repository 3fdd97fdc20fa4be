"""Every SQL text the pipeline sends to the warehouse, built in one place (Databricks SQL: a
unit test reads each with the Databricks dialect, so no DuckDB-ism reaches production).

Identifiers are backtick-quoted by :func:`ident`; values always travel as named parameters
(``:start``, ``:end``, ``:cursor``, ``:keys``), never as text. The one piece of user text, a
query filter, arrives here already checked by
:func:`blade_pipeline.sources.user_filters.validate_filter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blade_pipeline.config.sources import BladeSource


def ident(name: str) -> str:
    """A Databricks identifier in backticks (a backtick inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"


def table(source: BladeSource) -> str:
    """``catalog.schema.table`` (``schema.table`` for a relational source) quoted as
    Databricks SQL writes it (a relational kind translates every statement to its dialect)."""
    return ".".join(ident(part) for part in source.location.parts)


def partition_rows(source: BladeSource, days: int = 1) -> str:
    """Rows whose watermark falls in [:start, :end). One day comes in the warehouse's own order
    (no sort: it streams as it scans); a range of days is ordered by the watermark, so that
    each day's rows arrive together and are staged one day at a time."""
    wm = ident(source.watermark_column)
    sql = f"SELECT * FROM {table(source)} WHERE {wm} >= :start AND {wm} < :end"
    return sql if days == 1 else f"{sql} ORDER BY {wm}"


def filtered_rows(source: BladeSource, checked_where: str | None, limit: int | None,
                  order_by_key: bool) -> str:
    """``SELECT *`` with an (already validated) filter, key order and limit."""
    sql = f"SELECT * FROM {table(source)}"
    if checked_where:
        sql += f" WHERE ({checked_where})"
    if order_by_key:
        sql += f" ORDER BY {ident(source.primary_key)}"
    if limit is not None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        sql += f" LIMIT {int(limit)}"
    return sql


def rows_by_keys(source: BladeSource) -> str:
    """Rows whose primary key is one of the array parameter ``:keys`` (the item job)."""
    key = ident(source.primary_key)
    return f"SELECT * FROM {table(source)} WHERE array_contains(:keys, {key})"


def duplicate_keys(source: BladeSource, rows_sql: str, by_day: bool = False) -> str:
    """Keys that more than one row of ``rows_sql`` holds, with the newest watermark of each
    (columns ``key``, ``newest``; ``day`` too when ``by_day``: duplicates within each UTC day
    of the watermark, as a daily partition sees them). ``rows_sql`` keeps its parameters."""
    pk, wm = ident(source.primary_key), ident(source.watermark_column)
    day = f"CAST({wm} AS DATE)"
    if not by_day:
        return (f"SELECT {pk} AS key, max({wm}) AS newest FROM ({rows_sql}) AS extracted "
                f"WHERE {pk} IS NOT NULL GROUP BY {pk} HAVING count(*) > 1")
    return (f"SELECT {day} AS day, {pk} AS key, max({wm}) AS newest FROM ({rows_sql}) AS "
            f"extracted WHERE {pk} IS NOT NULL GROUP BY {day}, {pk} HAVING count(*) > 1")


def key_constraints(source: BladeSource) -> str:
    """PRIMARY KEY and UNIQUE constraints of a relational source's table that hold its primary
    key column alone (one row each), from ``information_schema`` as PostgreSQL and MySQL keep
    it. Both enforce them, so such a table has no duplicate keys to look for (Databricks'
    constraints are informational: a warehouse is never asked). The names come from
    sources.yaml and are written as string literals (sqlglot quotes them for each dialect):
    MySQL's reader binds no text parameters."""
    from sqlglot import exp

    location = source.location
    schema, name, column = (exp.Literal.string(v).sql(dialect="databricks") for v in (
        location.schema_, location.table, source.primary_key))
    return ("SELECT tc.constraint_name AS name FROM information_schema.table_constraints AS tc "
            "JOIN information_schema.key_column_usage AS kcu "
            "ON kcu.constraint_schema = tc.constraint_schema "
            "AND kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
            f"WHERE tc.table_schema = {schema} AND tc.table_name = {name} "
            "AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') "
            "GROUP BY tc.constraint_name "
            f"HAVING count(*) = 1 AND max(kcu.column_name) = {column}")


def changed_days(source: BladeSource) -> str:
    """Days with rows newer than ``:cursor``: newest watermark and row count per day."""
    wm = ident(source.watermark_column)
    return (f"SELECT CAST({wm} AS DATE) AS day, max({wm}) AS newest, count(*) AS changed "
            f"FROM {table(source)} WHERE {wm} > :cursor GROUP BY 1 ORDER BY 1")


def rows_per_day(source: BladeSource) -> str:
    """Rows per UTC day of the watermark in [:start, :end) (columns ``day``, ``rows``)."""
    wm = ident(source.watermark_column)
    return (f"SELECT CAST({wm} AS DATE) AS day, count(*) AS rows FROM {table(source)} "
            f"WHERE {wm} >= :start AND {wm} < :end GROUP BY 1")


def newest_watermark(source: BladeSource) -> str:
    """The table's newest watermark (column ``newest``)."""
    return f"SELECT max({ident(source.watermark_column)}) AS newest FROM {table(source)}"


def ping() -> str:
    """The connection check's statement."""
    return "SELECT 1 AS ok"


def schema_names() -> str:
    """A relational source's connection check: its schemas (column 0), in standard SQL that
    PostgreSQL and MySQL run as written (``information_schema``, no translation)."""
    return "SELECT schema_name FROM information_schema.schemata ORDER BY schema_name"
