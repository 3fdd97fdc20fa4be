"""Seed BLADE tables into a PostgreSQL database with the mock warehouse's generator (issue 21):
the same rows (invalid ones included) for the same parameters, so a PostgreSQL source and the
mock warehouse hold the same data and must yield the same items."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa

from blade_pipeline.devservices.warehouse import generator


def _pg_type(arrow: pa.DataType) -> str:
    if pa.types.is_decimal(arrow):
        return f"numeric({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "timestamptz" if arrow.tz else "timestamp"
    simple = {pa.string(): "text", pa.large_string(): "text", pa.int16(): "smallint",
              pa.int32(): "integer", pa.int64(): "bigint", pa.float32(): "real",
              pa.float64(): "double precision", pa.bool_(): "boolean", pa.date32(): "date"}
    if arrow not in simple:
        raise TypeError(f"no PostgreSQL type for Arrow {arrow}")
    return simple[arrow]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def seed_postgres(url: str, rows: int, seed: int = 42, *, end: dt.date | None = None,
                  days: int = 730, invalid_fraction: float = 0.01, schema: str = "blade",
                  data_types: list[str] | None = None) -> dict[str, int]:
    """(Re)create the tables of ``data_types`` (all four by default) in ``schema`` of the
    database at ``url``, with the generator's rows; returns rows per data type."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    con = duckdb.connect()
    generator.seed(con, rows, seed, end=end, days=days, invalid_fraction=invalid_fraction,
                   schema="blade")
    counts: dict[str, int] = {}
    with adbc_pg.connect(url) as pg, pg.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
        for data_type in data_types or list(generator.TABLES):
            name = generator.TABLES[data_type]
            table = con.sql(f"SELECT * FROM blade.{name}").arrow()
            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
            target = f"{_quote(schema)}.{_quote(name)}"
            columns = ", ".join(f"{_quote(f.name)} {_pg_type(f.type)}" for f in table.schema)
            cursor.execute(f"DROP TABLE IF EXISTS {target}")
            cursor.execute(f"CREATE TABLE {target} ({columns})")
            cursor.adbc_ingest(name, table, mode="append", db_schema_name=schema)
            counts[data_type] = table.num_rows
        pg.commit()
    con.close()
    return counts
