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

import datetime as dt
import functools
import re
import zoneinfo
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
        if isinstance(node, exp.TableSample):
            _sample(node)
        return node

    return tree.transform(visit, copy=True)


def _sample(node: exp.TableSample) -> None:
    """Databricks' ``TABLESAMPLE`` as DuckDB's on the same table (before joins and WHERE):
    ``n PERCENT`` and ``BUCKET x OUT OF y`` keep each row with that probability (Bernoulli, as
    Spark's sampler), ``n ROWS`` keeps at most n rows (a reservoir); ``REPEATABLE (seed)``
    picks the same rows for the same seed."""
    numerator, denominator = node.args.get("bucket_numerator"), node.args.get("bucket_denominator")
    if numerator is not None and denominator is not None:
        node.set("percent", exp.Literal.number(
            100 * int(numerator.name) / max(int(denominator.name), 1)))
        node.set("bucket_numerator", None)
        node.set("bucket_denominator", None)
    node.set("method", exp.var("reservoir" if node.args.get("size") else "bernoulli"))


_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T].*)?)?)?\s*$", re.S)
_TIMESTAMP = re.compile(
    r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})"
    r"(?:\.(\d{1,9}))?)?)?)?)?)?\s*(?P<zone>Z|[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?"
    r"|(?:UTC|GMT|UT)(?:[+-]\d{1,2}(?::?\d{2})?)?|[A-Za-z_]+/[\w+\-/]+)?\s*$", re.I)
_TYPED_LITERAL = re.compile(r"\b(DATE|TIMESTAMP(?:_NTZ|_LTZ)?)\s*'([^']*)'", re.I)
_DATE_TYPES = (exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP,
               exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ,
               exp.DataType.Type.TIMESTAMPNTZ)


def _zone(text: str | None) -> str | None:
    """A timestamp string's zone as DuckDB reads it: ``+HH:MM[:SS]`` or a region ID."""
    if not text:
        return ""
    if text.upper() in ("Z", "UTC", "GMT", "UT"):
        return "+00:00"
    text = re.sub(r"^(UTC|GMT|UT)", "", text, flags=re.I)
    if text[0] in "+-":
        digits = text[1:].replace(":", "")
        hours, rest = (digits[:2], digits[2:]) if len(digits) % 2 == 0 else (digits[:1],
                                                                              digits[1:])
        parts = [f"{int(hours):02d}"] + [rest[i:i + 2] for i in range(0, len(rest), 2)]
        return text[0] + ":".join(parts) if int(hours) <= 18 else None
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return " " + text


def spark_datetime(text: str, kind: exp.DataType.Type) -> str | None:
    """``text`` as Spark reads it into a DATE or TIMESTAMP (``2021`` and ``2021-09`` are the
    first of the year or month, ``2021-09-30 11`` is 11:00, an offset or region ID may
    follow), written the way DuckDB reads it; None where Spark finds no such value."""
    match = (_DATE if kind == exp.DataType.Type.DATE else _TIMESTAMP).match(text)
    if match is None:
        return None
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        day_text = dt.date(year, month, day).isoformat()
    except ValueError:
        return None
    if kind == exp.DataType.Type.DATE:
        return day_text
    hour, minute, second = (int(match[i] or 0) for i in (4, 5, 6))
    zone = _zone(match["zone"])
    if hour > 23 or minute > 59 or second > 59 or zone is None:
        return None
    micros = (match[7] or "").ljust(6, "0")[:6]
    zone = "" if kind == exp.DataType.Type.TIMESTAMPNTZ else zone
    return f"{day_text} {hour:02d}:{minute:02d}:{second:02d}.{micros}{zone}"


def _type_name(kind: exp.DataType.Type) -> str:
    return {exp.DataType.Type.DATE: "DATE",
            exp.DataType.Type.TIMESTAMPNTZ: "TIMESTAMP_NTZ"}.get(kind, "TIMESTAMP")


def _datetime_literal(node: exp.Cast, typed: set[str], ansi: bool) -> exp.Expression:
    """A STRING literal cast to DATE/TIMESTAMP (``DATE '2021-09'``, ``CAST('2021' AS DATE)``,
    ``to_date('…')``) with Spark's reading of it; an impossible value is INVALID_TYPED_LITERAL
    for a typed literal, CAST_INVALID_INPUT with ANSI mode, NULL without."""
    kind = node.to.this
    value = spark_datetime(node.this.name, kind)
    if value is not None:
        return exp.Cast(this=exp.Literal.string(value), to=node.to.copy())
    if node.this.name in typed:
        raise DatabricksSqlError("INVALID_TYPED_LITERAL", f'The value of the typed literal '
                                 f'"{_type_name(kind)}" is invalid: \'{node.this.name}\'.',
                                 "42604")
    if ansi:
        raise cast_invalid_input(node.this.name, _type_name(kind))
    return exp.Cast(this=exp.null(), to=node.to.copy())


def cast_invalid_input(value: str, target: str) -> DatabricksSqlError:
    return DatabricksSqlError(
        "CAST_INVALID_INPUT", f"The value '{value}' of the type \"STRING\" cannot be cast to "
        f"\"{target}\" because it is malformed. Correct the value as per the syntax, or change "
        "its target type. Use `try_cast` to tolerate malformed input and return NULL instead.",
        "22018")


def _session_rules(tree: exp.Expression, sql: str, ansi: bool) -> exp.Expression:
    """Databricks' dates, timestamps and ANSI mode on DuckDB: Spark's reading of date and
    timestamp strings in literals; ``TIMESTAMP(…)``/``to_timestamp`` as the zoned TIMESTAMP
    (DuckDB's TIMESTAMPTZ, read in the session time zone); ``date_add``/``date_sub`` answer
    DATE; division by zero fails (DIVIDE_BY_ZERO) with ANSI mode and is NULL without, where
    casts are TRY_CASTs."""
    typed = {m[2] for m in _TYPED_LITERAL.finditer(sql)}

    def visit(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.TsOrDsToDate) and not node.args.get("format"):
            node = exp.Cast(this=node.this, to=exp.DataType.build("DATE"))
        if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.TIMESTAMP:
            node.set("to", exp.DataType.build("TIMESTAMPTZ"))  # Databricks' TIMESTAMP is zoned
        if isinstance(node, exp.Cast) and node.to.this in _DATE_TYPES \
                and isinstance(node.this, exp.Literal) and node.this.is_string:
            node = _datetime_literal(node, typed, ansi and not isinstance(node, exp.TryCast))
        if isinstance(node, exp.TsOrDsAdd) and node.text("unit").upper() in ("", "DAY"):
            return exp.Add(this=exp.Cast(this=node.this, to=exp.DataType.build("DATE")),
                           expression=exp.Cast(this=node.expression,
                                               to=exp.DataType.build("INT")))
        if isinstance(node, exp.Div):
            divisor = node.expression
            guard = (exp.Case(ifs=[exp.If(this=exp.EQ(this=divisor.copy(),
                                                      expression=exp.Literal.number(0)),
                                          true=exp.Anonymous(this="error", expressions=[
                                              exp.Literal.string("Division by zero")]))],
                              default=divisor) if ansi
                     else exp.Nullif(this=divisor, expression=exp.Literal.number(0)))
            node.set("expression", exp.Paren(this=guard))
        if isinstance(node, exp.CurrentTimezone):
            return exp.Anonymous(this="current_setting", expressions=[
                exp.Literal.string("TimeZone")])
        if not ansi and type(node) is exp.Cast:
            return exp.TryCast(this=node.this, to=node.to)
        return node

    for node in reversed(list(tree.walk(bfs=False))):  # children before their parents
        new = visit(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


@functools.lru_cache(maxsize=4096)
def _translate(sql: str, catalogs: tuple[tuple[str, str], ...], ansi: bool = True) -> str:
    tree = parse(sql)
    if not isinstance(tree, RUNS):  # SET, GRANT, OPTIMIZE, VACUUM, ... (and DuckDB's PRAGMA)
        kind = tree.this if isinstance(tree, exp.Command) else tree.key.upper()
        raise DatabricksSqlError(
            "UNSUPPORTED_FEATURE", f"the mock warehouse does not run `{kind}` statements "
            "(it runs queries, INSERT/UPDATE/DELETE/MERGE, CREATE/ALTER/DROP TABLE and answers "
            "SHOW CATALOGS/SCHEMAS/TABLES, DESCRIBE TABLE and USE; try the rest on a real "
            "warehouse).", "0A000")
    tree = _session_rules(_repoint(tree, dict(catalogs)), sql, ansi)
    return tree.sql("duckdb", unsupported_level=ErrorLevel.IGNORE)


def translate(sql: str, catalogs: Mapping[str, str], ansi: bool = True) -> str:
    """DuckDB SQL for Databricks SQL ``sql`` (catalog names as keys, lower case, mapped to
    DuckDB database names) in a session with ANSI mode on or off; DatabricksSqlError for what
    Databricks would reject."""
    return _translate(sql, tuple(sorted(catalogs.items())), ansi)


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
    if isinstance(exc, duckdb.InvalidInputException) and "Division by zero" in text:
        return DatabricksSqlError("DIVIDE_BY_ZERO", "Division by zero. Use `try_divide` to "
                                  "tolerate divisor being 0 and return NULL instead. If "
                                  'necessary set "ANSI_MODE" to "false" to bypass this error.',
                                  "22012")
    if isinstance(exc, duckdb.OutOfRangeException) and "Overflow" in text:
        return DatabricksSqlError("ARITHMETIC_OVERFLOW", f"{text} If necessary set "
                                  '"ANSI_MODE" to "false" to bypass this error.', "22003")
    if isinstance(exc, duckdb.ConversionException) and "out of range" in text \
            and "date field" not in text:
        return DatabricksSqlError("CAST_OVERFLOW", f"{text} Use `try_cast` to tolerate overflow "
                                  "and return NULL instead.", "22003")
    if isinstance(exc, duckdb.ConversionException):
        return DatabricksSqlError("CAST_INVALID_INPUT", text, "22018")
    if isinstance(exc, duckdb.ParserException):
        return DatabricksSqlError("PARSE_SYNTAX_ERROR", f"{text} (the mock warehouse could not "
                                  "run its DuckDB translation of this statement)", "42601")
    if isinstance(exc, duckdb.ConstraintException):
        return DatabricksSqlError("DELTA_CONSTRAINT_VIOLATION", text, "23000")
    return DatabricksSqlError("INTERNAL_ERROR", f"the mock warehouse (DuckDB) failed: {text}",
                              "XX000")
