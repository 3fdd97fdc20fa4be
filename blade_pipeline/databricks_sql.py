"""Databricks SQL, read the way a Databricks SQL warehouse reads it (sqlglot's ``databricks``
dialect), and the errors it answers for what it rejects.

One home for what "is this Databricks SQL?" means, shared by the pipeline (the query job's
filter, the guard over every SQL text the pipeline sends) and the mock warehouse (which then
runs the statement on DuckDB: ``devservices/warehouse/sql_dialect.py``):

* text that does not parse, more than one statement, DuckDB's ``* REPLACE`` /
  ``* RENAME`` or ``USING SAMPLE``: ``PARSE_SYNTAX_ERROR`` (42601);
* a function Databricks does not have — ``regexp_matches`` and ``list_value`` are DuckDB's:
  ``UNRESOLVED_ROUTINE`` (42883). Every name called as a function in the text is looked up in
  Databricks' list of built-in functions (``databricks_functions.txt``, from Databricks' and
  Spark's function references), since sqlglot alone accepts any name it knows from any dialect.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import TokenType

DIALECT = "databricks"
FUNCTIONS_FILE = Path(__file__).with_name("databricks_functions.txt")
class DatabricksSqlError(Exception):
    """What a Databricks SQL warehouse answers for a statement it rejects."""

    def __init__(self, error_class: str, message: str, sql_state: str):
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sql_state}")
        self.error_class, self.message, self.sql_state = error_class, message, sql_state


@functools.cache
def builtin_functions() -> frozenset[str]:
    """Names of Databricks' built-in functions (lower case)."""
    return frozenset(line.strip().lower() for line in FUNCTIONS_FILE.read_text().splitlines()
                     if line.strip() and not line.startswith("#"))


def syntax_error(detail: str) -> DatabricksSqlError:
    return DatabricksSqlError("PARSE_SYNTAX_ERROR", f"Syntax error: {detail}.", "42601")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def called_names(sql: str) -> list[str]:
    """Plain names written as function calls (``name(``) in ``sql``, in order, lower case.
    Words sqlglot tokenizes as keywords (``CAST``, ``LEFT``, ``IN``, ``VALUES``...) are not
    looked at: they are Databricks syntax or functions either way."""
    tokens = sqlglot.tokenize(sql, read=DIALECT)
    return [token.text.lower() for i, token in enumerate(tokens[:-1])
            if token.token_type == TokenType.VAR
            and tokens[i + 1].token_type == TokenType.L_PAREN
            and not (i and tokens[i - 1].token_type == TokenType.DOT)]  # schema.fn( / db.t (


def check_functions(sql: str, tree: exp.Expression) -> None:
    """UNRESOLVED_ROUTINE for the first name called as a function that Databricks lacks
    (names the statement declares — tables, columns, aliases — are not calls)."""
    declared = {i.name.lower() for i in tree.find_all(exp.Identifier)}
    if any(s.args.get("seed") for s in tree.find_all(exp.TableSample)):
        declared.add("repeatable")  # TABLESAMPLE (...) REPEATABLE (seed) is not a call
    known = builtin_functions()
    for name in called_names(sql):
        if name not in known and name not in declared:
            raise DatabricksSqlError(
                "UNRESOLVED_ROUTINE", f"Cannot resolve routine `{name}` on search path "
                "[`system`.`builtin`, `system`.`session`]. It is not a Databricks built-in "
                "function (DuckDB or another engine may have it).", "42883")


def _check_constructs(tree: exp.Expression) -> None:
    for star in tree.find_all(exp.Star):
        if star.args.get("replace") or star.args.get("rename"):
            raise syntax_error("`* REPLACE (...)` / `* RENAME (...)` are not Databricks SQL "
                               "(select the columns, or use `* EXCEPT (...)`)")
    for sample in tree.find_all(exp.TableSample):
        if isinstance(sample.parent, exp.Select):  # DuckDB's USING SAMPLE; or after an alias
            raise syntax_error("a sample of the whole query (DuckDB's `USING SAMPLE`) is not "
                               f"Databricks SQL: write {_SAMPLE_SYNTAX} right after the table "
                               "name, before its alias")
        if sample.args.get("method") or sample.args.get("bucket_field"):
            raise syntax_error(f"Databricks samples with {_SAMPLE_SYNTAX}: no sampling method "
                               "(SYSTEM, BERNOULLI, ...) and no BUCKET ... ON")


_SAMPLE_SYNTAX = "`TABLESAMPLE (n PERCENT | n ROWS | BUCKET x OUT OF y) [REPEATABLE (seed)]`"
_SAMPLE_SHAPES = {("N", "PERCENT"), ("N", "ROWS"), ("BUCKET", "N", "OUT", "OF", "N")}


def _check_samples(sql: str) -> None:
    """PARSE_SYNTAX_ERROR unless each ``TABLESAMPLE (...)`` is one of Databricks' three forms
    (sqlglot also reads a bare ``(n)``, DuckDB's ``n%`` and a method name)."""
    tokens = sqlglot.tokenize(sql, read=DIALECT)
    for i, token in enumerate(tokens):
        if token.token_type != TokenType.TABLE_SAMPLE:
            continue
        shape: list[str] = []
        for inner in tokens[i + 2:]:
            if inner.token_type == TokenType.R_PAREN:
                break
            shape.append("N" if inner.token_type == TokenType.NUMBER else inner.text.upper())
        opened = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.L_PAREN
        if not opened or tuple(shape) not in _SAMPLE_SHAPES:
            raise syntax_error(f"Databricks samples a table with {_SAMPLE_SYNTAX}")


@functools.lru_cache(maxsize=4096)
def parse(sql: str) -> exp.Expression:
    """The one statement of ``sql`` as Databricks reads it; DatabricksSqlError otherwise.
    Cached per text: the tree is shared, callers copy it before changing it."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT,
                                               error_level=ErrorLevel.RAISE) if s is not None]
    except (ParseError, TokenError) as exc:
        raise syntax_error(_first_line(exc)) from None
    if not statements:
        raise syntax_error("the statement is empty")
    if len(statements) > 1:
        raise syntax_error("one statement per call; remove the ';' and what follows")
    [tree] = statements
    if not isinstance(tree, exp.Command):
        _check_constructs(tree)
        if tree.find(exp.TableSample):
            _check_samples(sql)
        check_functions(sql, tree)
    return tree


def parse_condition(text: str) -> exp.Expression:
    """``text`` as one Databricks boolean expression (a WHERE clause's body)."""
    try:
        tokens = sqlglot.tokenize(text, read=DIALECT)
    except TokenError as exc:
        raise syntax_error(_first_line(exc)) from None
    if any(t.comments for t in tokens):
        raise syntax_error("comments are not allowed in a filter")
    if any(t.token_type == TokenType.SEMICOLON for t in tokens):
        raise syntax_error("';' is not allowed in a filter: one expression only")
    depth = 0
    for token in tokens:
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        if depth < 0:
            break
    if depth:
        raise syntax_error("unbalanced parentheses in the filter: a filter cannot open or "
                           "close the WHERE clause")
    try:
        tree = sqlglot.parse_one(text, read=DIALECT, into=exp.Condition)
    except ParseError as exc:
        detail = _first_line(exc)
        raise syntax_error("not one expression" if "into <class" in detail else detail
                           ) from None
    _check_constructs(tree)
    check_functions(text, tree)
    return tree
