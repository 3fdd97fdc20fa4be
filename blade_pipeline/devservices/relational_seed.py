"""Seed BLADE tables into PostgreSQL or MySQL/MariaDB with the mock warehouse's generator
the same rows (invalid ones included) for the same parameters, so a relational
source and the mock warehouse hold the same data and must yield the same items."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa

from blade_pipeline.devservices.warehouse import generator


def _generated(rows: int, seed: int, end: dt.date | None, days: int,
               invalid_fraction: float) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    generator.seed(con, rows, seed, end=end, days=days, invalid_fraction=invalid_fraction,
                   schema="blade")
    return con


def _arrow(con: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    table = con.sql(f"SELECT * FROM blade.{name}").arrow()
    return table.read_all() if isinstance(table, pa.RecordBatchReader) else table


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


def ensure_postgres_database(url: str) -> None:
    """Create the database ``url`` names if the server lacks it (through the server's
    ``postgres`` database; the demo's ``blade_sources``)."""
    from urllib.parse import urlsplit

    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                             user=parts.username or "postgres", password=parts.password,
                             dbname="postgres", connect_timeout=5)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {_quote(name)}")
    finally:
        admin.close()


def seed_postgres(url: str, rows: int, seed: int = 42, *, end: dt.date | None = None,
                  days: int = 730, invalid_fraction: float = 0.01, schema: str = "blade",
                  data_types: list[str] | None = None) -> dict[str, int]:
    """(Re)create the tables of ``data_types`` (all four by default) in ``schema`` of the
    database at ``url``, with the generator's rows; returns rows per data type."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    con = _generated(rows, seed, end, days, invalid_fraction)
    counts: dict[str, int] = {}
    with adbc_pg.connect(url) as pg, pg.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
        for data_type in data_types or list(generator.TABLES):
            name = generator.TABLES[data_type]
            table = _arrow(con, name)
            target = f"{_quote(schema)}.{_quote(name)}"
            columns = ", ".join(f"{_quote(f.name)} {_pg_type(f.type)}" for f in table.schema)
            cursor.execute(f"DROP TABLE IF EXISTS {target}")
            cursor.execute(f"CREATE TABLE {target} ({columns})")
            cursor.adbc_ingest(name, table, mode="append", db_schema_name=schema)
            counts[data_type] = table.num_rows
        pg.commit()
    con.close()
    # vacuumed and analyzed, as autovacuum leaves a live table: without statistics PostgreSQL
    # sorts a 1M-row GROUP BY on disk where it would hash it, and an autovacuum of the fresh
    # rows would run beside whatever reads them next
    with adbc_pg.connect(url, autocommit=True) as pg, pg.cursor() as cursor:
        for data_type in data_types or list(generator.TABLES):
            cursor.execute(
                f"VACUUM (ANALYZE) {_quote(schema)}.{_quote(generator.TABLES[data_type])}")
    return counts


def _mysql_type(arrow: pa.DataType) -> str:
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "DATETIME(6)"
    simple = {pa.string(): "TEXT", pa.large_string(): "TEXT", pa.int16(): "SMALLINT",
              pa.int32(): "INT", pa.int64(): "BIGINT", pa.float32(): "FLOAT",
              pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.date32(): "DATE"}
    if arrow not in simple:
        raise TypeError(f"no MySQL type for Arrow {arrow}")
    return simple[arrow]


def seed_mysql(url: str, rows: int, seed: int = 42, *, end: dt.date | None = None,
               days: int = 730, invalid_fraction: float = 0.01, schema: str = "blade",
               data_types: list[str] | None = None) -> dict[str, int]:
    """(Re)create the tables in MySQL database ``schema`` on the server of ``url``
    (``mysql://user:password@host:port/...``) with the generator's rows: DuckDB writes each
    table as CSV, the server loads it (``LOAD DATA LOCAL INFILE``, through PyMySQL; every
    value quoted, NULL as the bare word, so no text is mistaken for a NULL)."""
    import tempfile
    from pathlib import Path
    from urllib.parse import unquote, urlsplit

    import pymysql

    parts = urlsplit(url)
    con = _generated(rows, seed, end, days, invalid_fraction)
    counts: dict[str, int] = {}
    db = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                         user=unquote(parts.username or "root"),
                         password=unquote(parts.password or ""), local_infile=True)
    try:
        with db.cursor() as cursor, tempfile.TemporaryDirectory() as tmp:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
            for data_type in data_types or list(generator.TABLES):
                name = generator.TABLES[data_type]
                table = _arrow(con, name)
                target = f"`{schema}`.`{name}`"
                columns = ", ".join(f"`{f.name}` {_mysql_type(f.type)}" for f in table.schema)
                cursor.execute(f"DROP TABLE IF EXISTS {target}")
                cursor.execute(f"CREATE TABLE {target} ({columns})")
                csv = Path(tmp) / f"{name}.csv"
                selects = ", ".join(
                    f'CAST("{f.name}" AS INTEGER)' if pa.types.is_boolean(f.type)
                    else f'"{f.name}"' for f in table.schema)
                con.execute(f"COPY (SELECT {selects} FROM blade.{name}) TO '{csv}' "
                            "(FORMAT csv, HEADER false, NULLSTR 'NULL', FORCE_QUOTE *)")
                names = ", ".join(f"`{n}`" for n in table.schema.names)
                cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {target} "
                               "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ENCLOSED BY "
                               "'\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                               f"({names})", (str(csv),))
                counts[data_type] = table.num_rows
        db.commit()
    finally:
        db.close()
        con.close()
    return counts
