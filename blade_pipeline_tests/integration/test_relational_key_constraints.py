"""A PostgreSQL or MySQL table whose key column is a PRIMARY KEY or UNIQUE constraint alone
cannot hold duplicate keys: staging does not ask the database to look for them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg2
import pymysql
import pytest

from blade_pipeline.config.sources import BladeSource, DatabaseTable, source_for
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.mysql import MySQLDatabase
from blade_pipeline.sources.postgres import PostgresDatabase
from blade_pipeline.steps import extract
from blade_pipeline_tests.mysql import MYSQL_SERVER, fresh_mysql_database, mariadb_answers
from blade_pipeline_tests.postgres import fresh_pg_database, pg_answers

#: table -> its key column's declaration; each table has rows with key '1' twice but the
#: constrained ones (which refuse the second row)
TABLES = {
    "keyed": "record_id VARCHAR(20) PRIMARY KEY",
    "unique_key": "record_id VARCHAR(20) UNIQUE",
    "composite": "record_id VARCHAR(20), revision INT, PRIMARY KEY (record_id, revision)",
    "plain": "record_id VARCHAR(20)",
}
EXPECTED = {"keyed": True, "unique_key": True, "composite": False, "plain": False}
DAY = dt.datetime(2026, 6, 1)


def table_source(kind: str, schema: str, name: str) -> BladeSource:
    return source_for("maintenance").model_copy(update={
        "kind": kind, "warehouse": None, "database": DatabaseTable(schema=schema, table=name)})


def create_tables(cursor, quote: str) -> None:
    for name, key in TABLES.items():
        cursor.execute(f"CREATE TABLE {quote}{name}{quote} ({key}"
                       + (", revision INT" if "revision" not in key else "")
                       + ", last_modified TIMESTAMP)")
        rows = [("1", 1), ("2", 1)] + ([] if EXPECTED[name] else [("1", 2)])
        for key_value, revision in rows:
            cursor.execute(f"INSERT INTO {quote}{name}{quote} (record_id, revision, "
                           "last_modified) VALUES (%s, %s, %s)",
                           (key_value, revision, DAY + dt.timedelta(hours=revision)))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    with fresh_pg_database("blade_keys") as url:
        db = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
        with db, db.cursor() as cursor:
            cursor.execute("CREATE SCHEMA blade")
            cursor.execute("SET search_path TO blade")
            create_tables(cursor, '"')
        db.close()
        yield url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture(scope="module")
def mysql_schema() -> Iterator[str]:
    if not mariadb_answers():
        pytest.skip("MariaDB does not answer on 127.0.0.1:3306 (root, empty password)")
    with fresh_mysql_database("blade_keys") as name:
        db = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                             autocommit=True)
        with db.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"USE `{name}`")
            create_tables(cursor, "`")
        db.close()
        yield name


def duplicates_asked(reader, source: BladeSource):
    return extract.duplicate_keys(reader, source, source_sql.partition_rows(source),
                                  extract.day_bounds(DAY.date().isoformat())).result(timeout=30)


@pytest.fixture(params=["postgres", "mysql"])
def database(request) -> tuple[str, object, str]:
    """(kind, reader, schema) of each database holding the tables."""
    if request.param == "postgres":
        return "postgres", PostgresDatabase(url=request.getfixturevalue("postgres_url")), "blade"
    schema = request.getfixturevalue("mysql_schema")
    return "mysql", MySQLDatabase(url=f"{MYSQL_SERVER}/{schema}"), schema


@pytest.mark.parametrize("name", sorted(TABLES))
def test_constraints_on_the_key_alone_spare_the_duplicate_query(database, name):
    kind, reader, schema = database
    source = table_source(kind, schema, name)
    assert reader.key_is_unique(source) is EXPECTED[name]
    duplicates = duplicates_asked(reader, source)
    if EXPECTED[name]:
        assert duplicates is None
    else:
        assert duplicates.column("key").to_pylist() == ["1"]


def test_a_table_the_login_cannot_see_is_not_taken_for_unique(postgres_url):
    reader = PostgresDatabase(url=postgres_url)
    assert reader.key_is_unique(table_source("postgres", "blade", "no_such_table")) is False
