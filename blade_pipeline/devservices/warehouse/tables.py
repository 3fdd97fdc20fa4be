"""The four BLADE tables of the mock warehouse: names, columns and DDL (DESIGN §3).

No constraints on purpose: the generator stores deliberately invalid rows (NULL and duplicate
keys among them) so that the pipeline's validation has real work.
"""

from __future__ import annotations

import duckdb

#: data_type -> table name
TABLES: dict[str, str] = {
    "maintenance": "blade_maintenance_data",
    "sortie": "blade_sortie_data",
    "supply": "blade_supply_data",
    "readiness": "blade_readiness_data",
}

#: data_type -> primary key column
PRIMARY_KEYS: dict[str, str] = {
    "maintenance": "record_id",
    "sortie": "sortie_id",
    "supply": "part_number",
    "readiness": "report_id",
}

#: data_type -> (column, DuckDB type) in table order; timestamps are UTC without time zone
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "maintenance": (
        ("record_id", "VARCHAR"), ("tail_number", "VARCHAR"), ("aircraft_type", "VARCHAR"),
        ("maint_type", "VARCHAR"), ("description", "VARCHAR"), ("due_date", "DATE"),
        ("priority", "VARCHAR"), ("status", "VARCHAR"), ("labor_hours", "DOUBLE"),
        ("base", "VARCHAR"), ("classification", "VARCHAR"), ("last_modified", "TIMESTAMP"),
    ),
    "sortie": (
        ("sortie_id", "VARCHAR"), ("tail_number", "VARCHAR"), ("aircraft_type", "VARCHAR"),
        ("mission_type", "VARCHAR"), ("takeoff_time", "TIMESTAMP"),
        ("landing_time", "TIMESTAMP"), ("flight_hours", "DOUBLE"), ("base", "VARCHAR"),
        ("status", "VARCHAR"), ("classification", "VARCHAR"), ("last_modified", "TIMESTAMP"),
    ),
    "supply": (
        ("part_number", "VARCHAR"), ("nomenclature", "VARCHAR"), ("quantity_on_hand", "INTEGER"),
        ("reorder_point", "INTEGER"), ("unit_cost", "DECIMAL(12,2)"), ("location", "VARCHAR"),
        ("condition_code", "VARCHAR"), ("classification", "VARCHAR"),
        ("last_modified", "TIMESTAMP"),
    ),
    "readiness": (
        ("report_id", "VARCHAR"), ("tail_number", "VARCHAR"), ("aircraft_type", "VARCHAR"),
        ("report_date", "DATE"), ("status", "VARCHAR"), ("reason", "VARCHAR"),
        ("base", "VARCHAR"), ("classification", "VARCHAR"), ("last_modified", "TIMESTAMP"),
    ),
}


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple:
    """First row of a query, reading the result to its end (DuckDB 2.0 refuses new work on a
    connection while a result from ``execute`` is unfinished)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else ()


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(con: duckdb.DuckDBPyConnection, data_type: str, schema: str = "blade") -> str:
    """``"db"."schema"."table"`` of a data type's table in the connection's current database."""
    (database,) = fetch_one(con, "SELECT current_database()")
    return ".".join(quote_ident(part) for part in (database, schema, TABLES[data_type]))


def create_table_sql(qualified: str, data_type: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` statement for one data type."""
    cols = ", ".join(f"{quote_ident(name)} {sql_type}" for name, sql_type in COLUMNS[data_type])
    return f"CREATE TABLE IF NOT EXISTS {qualified} ({cols})"


def create_tables(con: duckdb.DuckDBPyConnection, schema: str = "blade") -> None:
    """Create the schema and the four tables (if missing) in the connection's current database."""
    (database,) = fetch_one(con, "SELECT current_database()")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}.{quote_ident(schema)}")
    for data_type in TABLES:
        con.execute(create_table_sql(qualified_name(con, data_type, schema), data_type))
