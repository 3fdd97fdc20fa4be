"""Databricks SQL -> DuckDB SQL translation used by the mock warehouse."""

import duckdb
import pytest

from blade_pipeline.devservices.warehouse.sql_dialect import (
    is_single_statement,
    lex_translate,
    translate,
)

CATALOGS = {"main": "dbx_main"}


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS dbx_main")
    con.execute("CREATE SCHEMA dbx_main.blade")
    con.execute("CREATE TABLE dbx_main.blade.t (a INT, b VARCHAR, c TIMESTAMP)")
    con.execute("INSERT INTO dbx_main.blade.t VALUES (1, 'x:y', '2025-01-01'), (2, 'main.blade.t', "
                "'2025-01-02')")
    return con


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a = :a", "SELECT * FROM t WHERE a = $a"),
    ("SELECT * FROM t WHERE a = :`param_1`", "SELECT * FROM t WHERE a = $param_1"),
    ("SELECT a::VARCHAR FROM t", "SELECT a::VARCHAR FROM t"),
    ("SELECT ':a' AS s, \"x:y\" FROM t", "SELECT ':a' AS s, \"x:y\" FROM t"),
    ("SELECT 1 -- :a\n", "SELECT 1 -- :a\n"),
    ("SELECT `my col` FROM `t`", 'SELECT "my col" FROM "t"'),
    ("SELECT 'it''s :x' WHERE b = :b", "SELECT 'it''s :x' WHERE b = $b"),
])
def test_lex_translate(sql, expected):
    assert lex_translate(sql) == expected


def test_single_statement():
    assert is_single_statement("SELECT 1;")
    assert is_single_statement("SELECT ';' AS x -- ;\n")
    assert not is_single_statement("SELECT 1; DROP TABLE t")


def _rows(con, sql, params=None):
    cur = con.cursor()
    return cur.sql(translate(cur, sql, CATALOGS), params=params).fetchall()


def test_three_part_names_map_to_the_attached_database(con):
    out = translate(con, "SELECT * FROM main.blade.t AS z WHERE z.a = 1", CATALOGS)
    assert out == 'SELECT * FROM "dbx_main".blade.t AS z WHERE z.a = 1'
    assert _rows(con, "SELECT a FROM main.blade.t WHERE a = 1") == [(1,)]


def test_backticked_names_and_four_part_columns(con):
    sql = ("SELECT main.blade.t.a, `main`.`blade`.`t`.`b` FROM `main`.`blade`.`t` "
           "WHERE main.blade.t.a = :`param_1`")
    assert _rows(con, sql, {"param_1": 2}) == [(2, "main.blade.t")]


def test_strings_and_subqueries_are_left_alone_or_mapped(con):
    sql = ("SELECT b FROM (SELECT * FROM main.blade.t) s "
           "WHERE b IN ('main.blade.t', 'x:y') AND a IN (SELECT a FROM main.blade.t) ORDER BY 1")
    assert _rows(con, sql) == [("main.blade.t",), ("x:y",)]


def test_dml_falls_back_to_identifier_chains(con):
    cur = con.cursor()
    cur.sql(translate(cur, "UPDATE main.blade.t SET b = 'main.blade.t' WHERE a = 1", CATALOGS))
    assert _rows(con, "SELECT b FROM main.blade.t WHERE a = 1") == [("main.blade.t",)]
