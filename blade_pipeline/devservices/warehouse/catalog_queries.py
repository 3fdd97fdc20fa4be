"""Metadata answers (GetCatalogs/Schemas/Tables/Columns, DESCRIBE TABLE, SHOW) from DuckDB's
catalog.

Result columns follow what Databricks returns (JDBC names for the Get* calls; col_name,
data_type, comment for DESCRIBE; ``catalogName``, ``namespace``, ... for the
``SHOW TABLES|COLUMNS IN CATALOG`` commands the Statement Execution API clients send in place
of the Get* calls), with Databricks catalog names in place of DuckDB databases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from sqlglot import exp

from blade_pipeline.databricks_sql import DatabricksSqlError, parse

_HIDDEN_SCHEMAS = ("main", "pg_catalog")

#: DuckDB type name -> (Databricks type name, JDBC type code)
_TYPES: dict[str, tuple[str, int]] = {
    "VARCHAR": ("string", 12), "BIGINT": ("bigint", -5), "INTEGER": ("int", 4),
    "SMALLINT": ("smallint", 5), "TINYINT": ("tinyint", -6), "DOUBLE": ("double", 8),
    "FLOAT": ("float", 6), "BOOLEAN": ("boolean", 16), "DATE": ("date", 91),
    # DuckDB's naive TIMESTAMP is Databricks' TIMESTAMP_NTZ; its TIMESTAMPTZ is TIMESTAMP
    "TIMESTAMP": ("timestamp_ntz", 93), "TIMESTAMP WITH TIME ZONE": ("timestamp", 93),
    "BLOB": ("binary", -2), "HUGEINT": ("decimal(38,0)", 3), "UBIGINT": ("decimal(20,0)", 3),
    "UINTEGER": ("bigint", -5), "USMALLINT": ("int", 4), "UTINYINT": ("smallint", 5),
}


def databricks_type(duck_type: str) -> tuple[str, int]:
    """Databricks type name and JDBC type code for a DuckDB type name."""
    upper = duck_type.upper()
    if upper.startswith("DECIMAL"):
        return duck_type.lower(), 3
    if upper.endswith("[]"):
        return f"array<{databricks_type(upper[:-2])[0]}>", 2003
    if upper.startswith("STRUCT"):
        return duck_type.lower(), 2002
    return _TYPES.get(upper, (duck_type.lower(), 1111))


def _mapping_sql(catalogs: Mapping[str, str]) -> tuple[str, list]:
    """A relation m(dbx, duck) listing the catalog mapping, and its parameters."""
    return ("(SELECT unnest($names) AS dbx, unnest($dbs) AS duck) m",
            [list(catalogs), list(catalogs.values())])


def _reader(table: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


def catalogs(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str]
             ) -> pa.RecordBatchReader:
    return _reader(pa.table({"TABLE_CAT": pa.array(sorted(catalog_map), pa.string())}))


def schemas(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
            catalog: str | None, schema_pattern: str | None) -> pa.RecordBatchReader:
    mapping, (names, dbs) = _mapping_sql(catalog_map)
    rel = cur.sql(
        f"SELECT s.schema_name AS TABLE_SCHEM, m.dbx AS TABLE_CATALOG "
        f"FROM duckdb_schemas() s JOIN {mapping} ON s.database_name = m.duck "
        "WHERE s.schema_name NOT IN $hidden AND m.dbx LIKE $cat AND s.schema_name LIKE $sch "
        "ORDER BY 2, 1",
        params={"names": names, "dbs": dbs, "hidden": list(_HIDDEN_SCHEMAS),
                "cat": (catalog or "%").lower(), "sch": schema_pattern or "%"})
    return rel.to_arrow_reader(10_000)


def tables(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
           catalog: str | None, schema_pattern: str | None, table_pattern: str | None,
           table_types: Sequence[str] | None) -> pa.RecordBatchReader:
    mapping, (names, dbs) = _mapping_sql(catalog_map)
    rel = cur.sql(
        f"SELECT m.dbx AS TABLE_CAT, t.schema_name AS TABLE_SCHEM, t.table_name AS TABLE_NAME, "
        "t.table_type AS TABLE_TYPE, t.comment AS REMARKS "
        "FROM (SELECT database_name, schema_name, table_name, 'TABLE' AS table_type, comment "
        "      FROM duckdb_tables() UNION ALL "
        "      SELECT database_name, schema_name, view_name, 'VIEW', comment "
        "      FROM duckdb_views() WHERE NOT internal) t "
        f"JOIN {mapping} ON t.database_name = m.duck "
        "WHERE m.dbx LIKE $cat AND t.schema_name LIKE $sch AND t.table_name LIKE $tab "
        "AND t.table_type IN $types ORDER BY 1, 2, 3",
        params={"names": names, "dbs": dbs, "cat": (catalog or "%").lower(),
                "sch": schema_pattern or "%", "tab": table_pattern or "%",
                "types": [t.upper() for t in (table_types or ["TABLE", "VIEW"])]})
    return rel.to_arrow_reader(10_000)


def _column_rows(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
                 catalog: str | None, schema: str | None, table: str | None,
                 column: str | None) -> list[tuple]:
    mapping, (names, dbs) = _mapping_sql(catalog_map)
    return cur.execute(
        "SELECT m.dbx, c.schema_name, c.table_name, c.column_name, c.data_type, "
        "c.numeric_precision, c.numeric_scale, c.is_nullable, c.column_default, "
        "c.column_index, c.comment "
        f"FROM duckdb_columns() c JOIN {mapping} ON c.database_name = m.duck "
        "WHERE m.dbx LIKE $cat AND c.schema_name LIKE $sch AND c.table_name LIKE $tab "
        "AND c.column_name LIKE $col ORDER BY 1, 2, 3, c.column_index",
        {"names": names, "dbs": dbs, "cat": (catalog or "%").lower(), "sch": schema or "%",
         "tab": table or "%", "col": column or "%"}).fetchall()


def columns(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
            catalog: str | None, schema: str | None, table: str | None,
            column: str | None) -> pa.RecordBatchReader:
    rows = _column_rows(cur, catalog_map, catalog, schema, table, column)
    types = [databricks_type(r[4]) for r in rows]
    out = pa.table({
        "TABLE_CAT": pa.array([r[0] for r in rows], pa.string()),
        "TABLE_SCHEM": pa.array([r[1] for r in rows], pa.string()),
        "TABLE_NAME": pa.array([r[2] for r in rows], pa.string()),
        "COLUMN_NAME": pa.array([r[3] for r in rows], pa.string()),
        "DATA_TYPE": pa.array([t[1] for t in types], pa.int32()),
        "TYPE_NAME": pa.array([t[0].upper() for t in types], pa.string()),
        "COLUMN_SIZE": pa.array([r[5] for r in rows], pa.int32()),
        "DECIMAL_DIGITS": pa.array([r[6] for r in rows], pa.int32()),
        "NUM_PREC_RADIX": pa.array([10 if r[5] is not None else None for r in rows], pa.int32()),
        "NULLABLE": pa.array([1 if r[7] else 0 for r in rows], pa.int32()),
        "REMARKS": pa.array([r[10] or "" for r in rows], pa.string()),
        "COLUMN_DEF": pa.array([r[8] for r in rows], pa.string()),
        "ORDINAL_POSITION": pa.array([r[9] for r in rows], pa.int32()),
        "IS_NULLABLE": pa.array(["YES" if r[7] else "NO" for r in rows], pa.string()),
        "IS_AUTO_INCREMENT": pa.array(["NO"] * len(rows), pa.string()),
    })
    return _reader(out)


def table_types() -> pa.RecordBatchReader:
    return _reader(pa.table({"TABLE_TYPE": pa.array(["TABLE", "VIEW"])}))


@dataclass(frozen=True)
class DescribeTable:
    """A parsed ``DESCRIBE [TABLE] [EXTENDED] name`` statement."""

    extended: bool
    parts: tuple[str, ...]


def describe_table(sql: str) -> DescribeTable | None:
    """``DESCRIBE [TABLE] [EXTENDED|FORMATTED] name`` as Databricks reads it (its output differs
    from DuckDB's); None for any other statement."""
    try:
        tree = parse(sql)
    except DatabricksSqlError:
        return None
    if not isinstance(tree, exp.Describe) or not isinstance(tree.this, exp.Table):
        return None
    style = (tree.args.get("style") or "").upper()
    return DescribeTable(style in ("EXTENDED", "FORMATTED"),
                         tuple(part.name for part in tree.this.parts))


_SHOW = re.compile(
    r"^\s*SHOW\s+(?P<what>CATALOGS|SCHEMAS|DATABASES|TABLES|VIEWS)"
    r"(?:\s+(?:FROM|IN)\s+(?P<where>[`\w.]+))?(?:\s+(?:LIKE\s+)?'(?P<pattern>[^']*)')?"
    r"\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Show:
    """A parsed ``SHOW CATALOGS | SCHEMAS | TABLES | VIEWS [IN ...] [LIKE 'pattern']``."""

    what: str  # catalogs, schemas, tables or views
    where: tuple[str, ...]
    pattern: str | None


_SHOW_IN_CATALOG = re.compile(
    r"^\s*SHOW\s+(?P<what>TABLES|COLUMNS)\s+IN\s+(?:ALL\s+CATALOGS|CATALOG\s+(?P<catalog>[`\w]+))"
    r"(?:\s+SCHEMA\s+LIKE\s+'(?P<schema>[^']*)')?(?:\s+TABLE\s+LIKE\s+'(?P<table>[^']*)')?"
    r"(?:\s+LIKE\s+'(?P<pattern>[^']*)')?\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ShowInCatalog:
    """``SHOW TABLES IN {CATALOG c | ALL CATALOGS} [SCHEMA LIKE 's'] [LIKE 't']`` or
    ``SHOW COLUMNS IN CATALOG c [SCHEMA LIKE 's'] [TABLE LIKE 't'] [LIKE 'col']``: the
    metadata commands of Statement Execution API clients (patterns as SQL LIKE, ``*`` = ``%``)."""

    what: str  # tables or columns
    catalog: str | None  # None: all catalogs
    schema: str | None
    table: str | None
    pattern: str | None


def _like(pattern: str | None) -> str | None:
    return None if pattern is None else pattern.replace("*", "%")


def show(sql: str) -> Show | ShowInCatalog | None:
    """``SHOW CATALOGS/SCHEMAS/TABLES/VIEWS`` as Databricks reads them, and the
    ``SHOW TABLES|COLUMNS IN CATALOG`` metadata commands; None otherwise."""
    if found := _SHOW_IN_CATALOG.match(sql):
        return ShowInCatalog(found["what"].lower(), found["catalog"] and
                             found["catalog"].strip("`").lower(), _like(found["schema"]),
                             _like(found["table"]), _like(found["pattern"]))
    match = _SHOW.match(sql)
    if not match:
        return None
    what = match["what"].lower().replace("databases", "schemas")
    where = tuple(p.strip("`") for p in match["where"].split(".")) if match["where"] else ()
    return Show(what, where, match["pattern"])


def _matches(names: list[str], pattern: str | None) -> list[bool]:
    """Databricks' SHOW patterns: ``*`` any characters, ``|`` alternatives, case-insensitive."""
    if pattern is None:
        return [True] * len(names)
    regex = re.compile("|".join(".*".join(re.escape(part) for part in alt.strip().split("*"))
                                for alt in pattern.split("|")), re.IGNORECASE)
    return [regex.fullmatch(name) is not None for name in names]


def _tables_in_catalog(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
                       stmt: ShowInCatalog) -> pa.RecordBatchReader:
    """``catalogName, namespace, tableName, isTemporary, information, tableType, remarks`` (the
    table type 6th, where the connector's table-type filter reads it)."""
    found = tables(cur, catalog_map, stmt.catalog, stmt.schema, stmt.pattern, None).read_all()
    n = found.num_rows
    return _reader(pa.table({
        "catalogName": found["TABLE_CAT"], "namespace": found["TABLE_SCHEM"],
        "tableName": found["TABLE_NAME"], "isTemporary": pa.array([False] * n, pa.bool_()),
        "information": pa.nulls(n, pa.string()), "tableType": found["TABLE_TYPE"],
        "remarks": found["REMARKS"]}))


def _columns_in_catalog(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
                        stmt: ShowInCatalog) -> pa.RecordBatchReader:
    """One row per column with the names JDBC drivers read (``col_name``, ``columnType``...);
    ``ordinalPosition`` counts from 1."""
    rows = _column_rows(cur, catalog_map, stmt.catalog, stmt.schema, stmt.table, stmt.pattern)

    def text(i: int) -> pa.Array:
        return pa.array([r[i] for r in rows], pa.string())

    def number(i: int) -> pa.Array:
        return pa.array([r[i] for r in rows], pa.int32())

    return _reader(pa.table({
        "catalogName": text(0), "namespace": text(1), "tableName": text(2), "col_name": text(3),
        "columnType": pa.array([databricks_type(r[4])[0].upper() for r in rows], pa.string()),
        "columnSize": number(5), "decimalDigits": number(6),
        "radix": pa.array([10 if r[5] is not None else None for r in rows], pa.int32()),
        "isNullable": pa.array(["true" if r[7] else "false" for r in rows], pa.string()),
        "remarks": text(10), "ordinalPosition": number(9),
        "isAutoIncrement": pa.array([False] * len(rows), pa.bool_()),
        "isGenerated": pa.array([False] * len(rows), pa.bool_())}))


def answer_show(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
                catalog: str, schema: str, stmt: Show | ShowInCatalog) -> pa.RecordBatchReader:
    """What Databricks answers: ``catalog``; ``databaseName``; ``database, tableName,
    isTemporary``; ``namespace, viewName, isTemporary, isMaterialized``; and for
    ``SHOW TABLES|COLUMNS IN CATALOG`` the columns above."""
    if isinstance(stmt, ShowInCatalog):
        if stmt.catalog is not None and stmt.catalog not in catalog_map:
            raise DatabricksSqlError("NO_SUCH_CATALOG_EXCEPTION",
                                     f"Catalog '{stmt.catalog}' was not found.", "42704")
        answer = _tables_in_catalog if stmt.what == "tables" else _columns_in_catalog
        return answer(cur, catalog_map, stmt)
    if stmt.what == "catalogs":
        names = sorted(catalog_map)
        return _reader(pa.table({"catalog": pa.array(
            [n for n, ok in zip(names, _matches(names, stmt.pattern), strict=True) if ok],
            pa.string())}))
    if stmt.what == "schemas":
        in_catalog = (stmt.where[0] if stmt.where else catalog).lower()
        if in_catalog not in catalog_map:
            raise DatabricksSqlError("NO_SUCH_CATALOG_EXCEPTION",
                                     f"Catalog '{in_catalog}' was not found.", "42704")
        found = schemas(cur, catalog_map, in_catalog, None).read_all()
        names = found.column("TABLE_SCHEM").to_pylist()
        return _reader(pa.table({"databaseName": pa.array(
            [n for n, ok in zip(names, _matches(names, stmt.pattern), strict=True) if ok],
            pa.string())}))
    in_catalog, in_schema = ((catalog, *stmt.where) if len(stmt.where) == 1 else
                             stmt.where if stmt.where else (catalog, schema))
    views = stmt.what == "views"  # SHOW TABLES lists views too, as Databricks does
    found = tables(cur, catalog_map, in_catalog.lower(), in_schema, None,
                   ["VIEW"] if views else None).read_all()
    names = found.column("TABLE_NAME").to_pylist()
    keep = _matches(names, stmt.pattern)
    if views:
        return _reader(pa.table({
            "namespace": pa.array([in_schema] * sum(keep), pa.string()),
            "viewName": pa.array([n for n, ok in zip(names, keep, strict=True) if ok],
                                 pa.string()),
            "isTemporary": pa.array([False] * sum(keep), pa.bool_()),
            "isMaterialized": pa.array([False] * sum(keep), pa.bool_())}))
    return _reader(pa.table({
        "database": pa.array([in_schema] * sum(keep), pa.string()),
        "tableName": pa.array([n for n, ok in zip(names, keep, strict=True) if ok], pa.string()),
        "isTemporary": pa.array([False] * sum(keep), pa.bool_())}))


def describe(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
             catalog: str, schema: str, stmt: DescribeTable) -> pa.RecordBatchReader:
    """Databricks-shaped DESCRIBE TABLE [EXTENDED] output."""
    parts = stmt.parts
    catalog, schema, table = ((catalog, schema, *parts) if len(parts) == 1 else
                              (catalog, *parts) if len(parts) == 2 else parts)
    rows = _column_rows(cur, catalog_map, catalog.lower(), schema, table, None)
    if not rows:
        raise DatabricksSqlError(
            "TABLE_OR_VIEW_NOT_FOUND", f"The table or view `{catalog}`.`{schema}`.`{table}` "
            "cannot be found. Verify the spelling and correctness of the schema and catalog.",
            "42P01")
    names = [r[3] for r in rows]
    types = [databricks_type(r[4])[0] for r in rows]
    comments = [r[10] for r in rows]
    if stmt.extended:
        names += ["", "# Detailed Table Information", "Catalog", "Database", "Table", "Type"]
        types += ["", "", catalog.lower(), schema, table, "MANAGED"]
        comments += [None] * 6
    out = pa.table({"col_name": pa.array(names, pa.string()),
                    "data_type": pa.array(types, pa.string()),
                    "comment": pa.array(comments, pa.string())})
    return _reader(out)
