"""Databricks SQL in, DuckDB SQL out: how the mock warehouse runs what the connector sends.

The text is read as Databricks SQL (``blade_pipeline.databricks_sql``: sqlglot's ``databricks``
dialect, Databricks' built-in functions; what Databricks would reject is rejected with its error
class and SQLSTATE) and written as DuckDB SQL by sqlglot. On the way, table and column
references whose first part names a Databricks catalog are re-pointed at the DuckDB database
standing for it (DuckDB reserves the name ``main``), named markers ``:name`` become DuckDB's
``$name``, and the ``range(...)`` table's column is ``id``, as in Databricks. Translations are
cached per statement text. DuckDB's errors while running the result are answered as the
Databricks error classes they correspond to (``from_duckdb``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import duckdb
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from blade_pipeline.databricks_sql import DatabricksSqlError, parse

#: The statements the mock runs on DuckDB (SHOW, DESCRIBE and USE are answered before this).
RUNS = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop,
        exp.Alter, exp.TruncateTable)
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist", re.I)
_MISSING_SCHEMA = re.compile(r"Schema with name (\S+) does not exist", re.I)
_MISSING_FUNCTION = re.compile(r"(?:Scalar|Table|Aggregate) Function with name (\S+) "
                               r"does not exist", re.I)
_MISSING_COLUMN = re.compile(r'Referenced column "?([^"\s]+)"? not found', re.I)
_CANDIDATES = re.compile(r"Candidate bindings: (.*)", re.I)


def _range_table(node: exp.Table) -> None:
    """Databricks' ``range(...)`` table names its column ``id`` (DuckDB's: ``range``)."""
    alias = node.args.get("alias")
    if alias is None or not alias.columns:
        name = alias.this if alias is not None else exp.to_identifier("range")
        node.set("alias", exp.TableAlias(this=name, columns=[exp.to_identifier("id")]))


def _repoint(tree: exp.Expression, catalogs: Mapping[str, str]) -> exp.Expression:
    def visit(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Anonymous) and \
                node.this.name.lower() == "range":
            _range_table(node)
        if isinstance(node, exp.Table | exp.Column):
            catalog = node.args.get("catalog")
            if isinstance(catalog, exp.Identifier) and catalog.name.lower() in catalogs:
                node.set("catalog", exp.to_identifier(catalogs[catalog.name.lower()],
                                                      quoted=True))
        return node

    return tree.transform(visit, copy=True)


@functools.lru_cache(maxsize=4096)
def _translate(sql: str, catalogs: tuple[tuple[str, str], ...]) -> str:
    tree = parse(sql)
    if not isinstance(tree, RUNS):  # SET, GRANT, OPTIMIZE, VACUUM, ... (and DuckDB's PRAGMA)
        kind = tree.this if isinstance(tree, exp.Command) else tree.key.upper()
        raise DatabricksSqlError(
            "UNSUPPORTED_FEATURE", f"the mock warehouse does not run `{kind}` statements "
            "(it runs queries, INSERT/UPDATE/DELETE/MERGE, CREATE/ALTER/DROP TABLE and answers "
            "SHOW CATALOGS/SCHEMAS/TABLES, DESCRIBE TABLE and USE; try the rest on a real "
            "warehouse).", "0A000")
    return _repoint(tree, dict(catalogs)).sql("duckdb", unsupported_level=ErrorLevel.IGNORE)


def translate(sql: str, catalogs: Mapping[str, str]) -> str:
    """DuckDB SQL for Databricks SQL ``sql`` (catalog names as keys, lower case, mapped to
    DuckDB database names); DatabricksSqlError for what Databricks would reject."""
    return _translate(sql, tuple(sorted(catalogs.items())))


def _table_named(sql: str, name: str) -> str:
    """The reference to table ``name`` as the statement wrote it, backtick-quoted parts."""
    try:
        tree = parse(sql)
    except DatabricksSqlError:
        return f"`{name}`"
    name = name.strip('"').split(".")[-1].strip('"')  # DuckDB names it "db.schema.table"
    for table in tree.find_all(exp.Table):
        if table.name.lower() == name.lower():
            return ".".join(f"`{part.name}`" for part in table.parts)
    return f"`{name}`"


def from_duckdb(exc: duckdb.Error, sql: str) -> DatabricksSqlError:
    """The Databricks error for DuckDB's ``exc`` while running (the translation of) ``sql``."""
    text = str(exc).split("\n\nLINE")[0].strip()
    if isinstance(exc, duckdb.CatalogException):
        if match := _MISSING_TABLE.search(text):
            return DatabricksSqlError(
                "TABLE_OR_VIEW_NOT_FOUND", f"The table or view {_table_named(sql, match[1])} "
                "cannot be found. Verify the spelling and correctness of the schema and "
                "catalog.", "42P01")
        if match := _MISSING_SCHEMA.search(text):
            return DatabricksSqlError("SCHEMA_NOT_FOUND", f"The schema `{match[1]}` cannot be "
                                      "found.", "42704")
        if match := _MISSING_FUNCTION.search(text):
            return DatabricksSqlError(
                "UNRESOLVED_ROUTINE", f"Cannot resolve routine `{match[1].lower()}` (the mock "
                "warehouse cannot run this Databricks function on DuckDB: try it on a real "
                "warehouse).", "42883")
        return DatabricksSqlError("TABLE_OR_VIEW_NOT_FOUND", text, "42P01")
    if isinstance(exc, duckdb.BinderException) and (match := _MISSING_COLUMN.search(text)):
        candidates = _CANDIDATES.search(text)
        hint = (f" Did you mean one of the following? [{candidates[1].strip()}]."
                if candidates else "")
        return DatabricksSqlError(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION", f"A column, variable, or function parameter "
            f"with name `{match[1]}` cannot be resolved.{hint}", "42703")
    if isinstance(exc, duckdb.BinderException):
        return DatabricksSqlError("DATATYPE_MISMATCH", text, "42K09")
    if isinstance(exc, duckdb.ConversionException):
        return DatabricksSqlError("CAST_INVALID_INPUT", text, "22018")
    if isinstance(exc, duckdb.ParserException):
        return DatabricksSqlError("PARSE_SYNTAX_ERROR", f"{text} (the mock warehouse could not "
                                  "run its DuckDB translation of this statement)", "42601")
    if isinstance(exc, duckdb.ConstraintException):
        return DatabricksSqlError("DELTA_CONSTRAINT_VIOLATION", text, "23000")
    return DatabricksSqlError("INTERNAL_ERROR", f"the mock warehouse (DuckDB) failed: {text}",
                              "XX000")
