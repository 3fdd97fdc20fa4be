"""Metadata answers (GetCatalogs/Schemas/Tables/Columns, DESCRIBE TABLE) from DuckDB's catalog.

Result columns follow what Databricks returns (JDBC names for the Get* calls; col_name,
data_type, comment for DESCRIBE), with Databricks catalog names in place of DuckDB databases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from blade_pipeline.devservices.warehouse.sql_dialect import tokenize

_HIDDEN_SCHEMAS = ("main", "pg_catalog")

#: DuckDB type name -> (Databricks type name, JDBC type code)
_TYPES: dict[str, tuple[str, int]] = {
    "VARCHAR": ("string", 12), "BIGINT": ("bigint", -5), "INTEGER": ("int", 4),
    "SMALLINT": ("smallint", 5), "TINYINT": ("tinyint", -6), "DOUBLE": ("double", 8),
    "FLOAT": ("float", 6), "BOOLEAN": ("boolean", 16), "DATE": ("date", 91),
    "TIMESTAMP": ("timestamp", 93), "TIMESTAMP WITH TIME ZONE": ("timestamp", 93),
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
    """Parse DESCRIBE TABLE statements (Databricks output differs from DuckDB's)."""
    toks = [t for t in tokenize(sql) if t.kind not in ("space", "comment") and t.text != ";"]
    if not toks or toks[0].kind != "ident" or toks[0].name not in ("describe", "desc"):
        return None
    i, extended = 1, False
    if i < len(toks) and toks[i].kind == "ident" and toks[i].name == "table":
        i += 1
    if i < len(toks) and toks[i].kind == "ident" and toks[i].name in ("extended", "formatted"):
        extended, i = True, i + 1
    parts = [t.name for t in toks[i::2]]
    dots = toks[i + 1::2]
    if not parts or len(parts) > 3 or any(d.text != "." for d in dots) or \
            any(t.kind not in ("ident", "quoted") for t in toks[i::2]):
        return None
    return DescribeTable(extended, tuple(parts))


def describe(cur: duckdb.DuckDBPyConnection, catalog_map: Mapping[str, str],
             catalog: str, schema: str, stmt: DescribeTable) -> pa.RecordBatchReader:
    """Databricks-shaped DESCRIBE TABLE [EXTENDED] output."""
    parts = stmt.parts
    catalog, schema, table = ((catalog, schema, *parts) if len(parts) == 1 else
                              (catalog, *parts) if len(parts) == 2 else parts)
    rows = _column_rows(cur, catalog_map, catalog.lower(), schema, table, None)
    if not rows:
        raise duckdb.CatalogException(
            f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{catalog}`.`{schema}`.`{table}` "
            "cannot be found.")
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
