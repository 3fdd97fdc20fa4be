"""Databricks SQL -> DuckDB SQL (the mock warehouse's dialect), on an in-memory DuckDB laid out
as the mock lays out its catalogs: Databricks SQL runs, what Databricks rejects is rejected with
its error class and SQLSTATE."""

import datetime as dt
import decimal

import duckdb
import pytest

from blade_pipeline.databricks_sql import DatabricksSqlError, called_names, parse
from blade_pipeline.devservices.warehouse.sql_dialect import from_duckdb, translate

CATALOGS = {"main": "dbx_main"}


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("ATTACH ':memory:' AS dbx_main")
    con.execute("CREATE SCHEMA dbx_main.blade")
    con.execute("CREATE TABLE dbx_main.blade.t (a INT, b VARCHAR, c TIMESTAMP)")
    con.execute("INSERT INTO dbx_main.blade.t VALUES (1, 'HIGH', '2025-01-01'), "
                "(2, 'main.blade.t', '2025-01-02'), (3, 'LOW', now()::TIMESTAMP)")
    con.execute("USE dbx_main.blade")
    return con


def rows(con, sql, params=None):
    cur = con.cursor()
    try:
        return cur.sql(translate(sql, CATALOGS), params=params).fetchall()
    except duckdb.Error as exc:
        raise from_duckdb(exc, sql) from exc


def rejected(con, sql) -> DatabricksSqlError:
    with pytest.raises(DatabricksSqlError) as caught:
        rows(con, sql)
    return caught.value


def test_three_part_names_backticks_and_four_part_columns(con):
    assert translate("SELECT * FROM main.blade.t AS z", CATALOGS) == \
        'SELECT * FROM "dbx_main".blade.t AS z'
    sql = ("SELECT main.blade.t.a, `main`.`blade`.`t`.`b` FROM `main`.`blade`.`t` "
           "WHERE main.blade.t.a = :`param_1`")
    assert rows(con, sql, {"param_1": 2}) == [(2, "main.blade.t")]
    assert rows(con, "SELECT b FROM main.blade.t WHERE a = :a", {"a": 1}) == [("HIGH",)]


@pytest.mark.parametrize(("expression", "expected"), [
    ("b RLIKE '^H'", [1]),
    ("c > date_sub(current_date(), 30)", [3]),
    ("array_contains(array('HIGH', 'LOW'), b)", [1, 3]),
    ("named_struct('x', a, 'y', b).y = 'LOW'", [3]),
    ("c < DATE'2025-01-02'", [1]),
    ("c = TIMESTAMP'2025-01-02 00:00:00'", [2]),
    ("c BETWEEN DATE'2025-01-01' - INTERVAL 1 DAY AND date_add(DATE'2025-01-01', 1)", [1, 2]),
    ("a::STRING = '2'", [2]),
    ("nvl(NULL, a) = 1 AND lpad(CAST(a AS STRING), 3, '0') = '001'", [1]),
    ("datediff(DATE'2025-01-03', to_date(c)) = 2", [1]),
    ("a IN (SELECT a FROM main.blade.t WHERE b ILIKE 'low')", [3]),
])
def test_databricks_expressions_run(con, expression, expected):
    assert [r[0] for r in rows(con, f"SELECT a FROM main.blade.t WHERE {expression} "
                                    "ORDER BY a")] == expected


def test_limit_offset_literals_and_casts(con):
    assert rows(con, "SELECT a FROM main.blade.t ORDER BY a LIMIT 1 OFFSET 1") == [(2,)]
    [(when, day, amount, items)] = rows(
        con, "SELECT TIMESTAMP'2025-01-02 03:04:05', DATE'2025-01-02', "
             "CAST('1.50' AS DECIMAL(10, 2)), array(1, 2)")
    assert when == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (day, amount, items) == (dt.date(2025, 1, 2), decimal.Decimal("1.50"), [1, 2])


def test_ddl_and_dml_in_databricks_spelling(con):
    for sql in ("CREATE TABLE main.blade.u (id INT, name STRING) USING DELTA",
                "INSERT INTO main.blade.u VALUES (1, 'a'), (2, 'b')",
                "ALTER TABLE main.blade.u ADD COLUMN score DOUBLE",
                "UPDATE main.blade.u SET score = 1.5 WHERE id = 1",
                "MERGE INTO main.blade.u AS t USING (SELECT 2 AS id, 'B' AS name) AS s "
                "ON t.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name "
                "WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)",
                "ALTER TABLE main.blade.u DROP COLUMN score"):
        rows(con, sql)
    assert rows(con, "SELECT * FROM main.blade.u ORDER BY id") == [(1, "a"), (2, "B")]


@pytest.mark.parametrize(("sql", "error_class", "sql_state"), [
    ("SELECT a FROM main.blade.t WHERE regexp_matches(b, '^H')", "UNRESOLVED_ROUTINE", "42883"),
    ("SELECT list_value(1, 2)", "UNRESOLVED_ROUTINE", "42883"),
    ("SELEC a FROM main.blade.t", "PARSE_SYNTAX_ERROR", "42601"),
    ("SELECT 1; SELECT 2", "PARSE_SYNTAX_ERROR", "42601"),
    ("SELECT * REPLACE (1 AS a) FROM main.blade.t", "PARSE_SYNTAX_ERROR", "42601"),
    ("SELECT * FROM main.blade.nope", "TABLE_OR_VIEW_NOT_FOUND", "42P01"),
    ("SELECT nope FROM main.blade.t", "UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703"),
    ("SELECT CAST('x' AS INT)", "CAST_INVALID_INPUT", "22018"),
])
def test_what_databricks_rejects_is_rejected_with_its_class(con, sql, error_class, sql_state):
    error = rejected(con, sql)
    assert (error.error_class, error.sql_state) == (error_class, sql_state)
    assert str(error).startswith(f"[{error_class}] ") and str(error).endswith(
        f"SQLSTATE: {sql_state}")


def test_a_missing_table_is_named_as_written():
    error = rejected(duckdb.connect(), "SELECT * FROM `main`.blade.nope")
    assert "The table or view `main`.`blade`.`nope` cannot be found" in str(error)


def test_function_names_are_calls_not_columns_or_tables():
    assert called_names("INSERT INTO t (a, b) SELECT lpad(a, 2), CAST(b AS INT) FROM s") == [
        "t", "lpad", "cast"]
    parse("INSERT INTO main.blade.t (a, b) VALUES (1, 'x')")  # `t (` is the table, declared
    parse("WITH w (x) AS (SELECT 1) SELECT x FROM w")


def test_translations_are_cached_per_text():
    sql = "SELECT a FROM main.blade.t WHERE b RLIKE 'x'"
    assert translate(sql, CATALOGS) is translate(sql, CATALOGS)


def test_statements_the_mock_does_not_run_say_so():
    with pytest.raises(DatabricksSqlError, match=r"UNSUPPORTED_FEATURE.*`SET`.*0A000"):
        translate("SET spark.sql.ansi.enabled = true", CATALOGS)


@pytest.mark.parametrize("sql", ["PRAGMA version", "OPTIMIZE main.blade.t", "GRANT SELECT ON "
                                 "TABLE main.blade.t TO x"])
def test_other_statements_are_unsupported_not_run(sql):
    with pytest.raises(DatabricksSqlError, match="UNSUPPORTED_FEATURE"):
        translate(sql, CATALOGS)


def test_the_range_table_names_its_column_id_as_databricks_does(con):
    assert rows(con, "SELECT sum(id) FROM range(4)") == [(6,)]
    assert rows(con, "SELECT max(r.id) FROM range(1, 4) AS r") == [(3,)]


def test_staging_statements_are_recognised():
    from blade_pipeline.devservices.warehouse.volumes import StagingOp, parse_staging

    assert parse_staging("PUT '/tmp/a b.csv' INTO '/Volumes/main/s/v/a.csv' OVERWRITE") == \
        StagingOp("PUT", "/Volumes/main/s/v/a.csv", "/tmp/a b.csv", True)
    assert parse_staging("get '/Volumes/main/s/v/a.csv' to '/tmp/x'") == StagingOp(
        "GET", "/Volumes/main/s/v/a.csv", "/tmp/x")
    assert parse_staging("REMOVE '/Volumes/main/s/v/a.csv';") == StagingOp(
        "REMOVE", "/Volumes/main/s/v/a.csv")
    assert parse_staging("SELECT 'PUT'") is None


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT array(10, 20)[0]", 10),  # Databricks arrays are 0-based, DuckDB lists 1-based
    ("SELECT element_at(array(10, 20), 1)", 10),
    ("SELECT split('a,b,c', ',')[1]", "b"),
    ("SELECT x FROM (VALUES (1), (NULL), (2)) AS v(x) ORDER BY x LIMIT 1",
     None),  # ascending puts NULLs first in Databricks, last in DuckDB
    ("SELECT 5 / 2", 2.5),
    ("SELECT 5 div 2", 2),
    ("SELECT concat('a', NULL)", None),
    ("SELECT substring('hello', 2, 3)", "ell"),
    ("SELECT date_format(TIMESTAMP'2025-01-02 03:04:05', 'yyyy-MM-dd HH:mm')",
     "2025-01-02 03:04"),
    ("SELECT to_date('02/01/2025', 'dd/MM/yyyy')", dt.date(2025, 1, 2)),
])
def test_databricks_semantics_survive_the_translation(con, sql, expected):
    assert rows(con, sql) == [(expected,)]
