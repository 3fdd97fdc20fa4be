"""The guard on user-supplied filters, and the filtered query built from one.

User filters (``--where``, the query job's ``where``) are checked with DuckDB's own tokenizer
and parser: one boolean expression, no statement separator, no comments, no DDL/DML keywords.
Values of partition bounds always travel as native query parameters, never as text.
"""

from __future__ import annotations

import duckdb

from blade_pipeline import warehouse_sql
from blade_pipeline.sources import BladeSource

_FORBIDDEN_KEYWORDS = frozenset({
    "insert", "update", "delete", "merge", "drop", "create", "alter", "truncate", "grant",
    "revoke", "copy", "attach", "detach", "call", "set", "reset", "use", "pragma", "install",
    "load", "export", "import", "vacuum", "checkpoint", "describe", "show", "explain",
    "replace", "optimize", "refresh", "msck", "into",
})


class UnsafeFilterError(ValueError):
    """A user filter that is not a single boolean expression."""


def validate_filter(where: str) -> str:
    """Return ``where`` stripped if it is one safe boolean expression; raise otherwise."""
    text = where.strip()
    if not text:
        raise UnsafeFilterError("the filter is empty")
    duck_text = text.replace("`", '"')  # Databricks quotes identifiers with backticks
    try:
        tokens = duckdb.tokenize(duck_text)
    except duckdb.Error as exc:
        raise UnsafeFilterError(f"the filter does not parse: {exc}") from None
    depth = 0
    ends = [pos for pos, _ in tokens[1:]] + [len(duck_text)]
    for (pos, kind), end in zip(tokens, ends, strict=True):
        rest = duck_text[pos:]
        if kind == duckdb.token_type.operator:
            for char in duck_text[pos:end]:
                depth += {"(": 1, ")": -1}.get(char, 0)
                if depth < 0:
                    raise UnsafeFilterError(f"unbalanced ')' in the filter (at {pos}): a "
                                            "filter cannot close the WHERE clause")
        if kind == duckdb.token_type.comment:
            raise UnsafeFilterError(f"comments are not allowed in a filter (at {pos})")
        if kind == duckdb.token_type.operator and rest.startswith(";"):
            raise UnsafeFilterError(f"';' is not allowed in a filter (at {pos}): one "
                                    "expression only, no second statement")
        if kind == duckdb.token_type.keyword:
            word = rest.split(None, 1)[0].strip("(),").lower()
            if word in _FORBIDDEN_KEYWORDS:
                raise UnsafeFilterError(f"keyword {word.upper()!r} is not allowed in a filter "
                                        f"(at {pos}); a filter is a boolean expression")
    if depth:
        raise UnsafeFilterError("unbalanced '(' in the filter")
    try:
        statements = duckdb.extract_statements(f"SELECT 1 WHERE ({duck_text})")
    except duckdb.Error as exc:
        raise UnsafeFilterError(f"the filter does not parse as an expression: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise UnsafeFilterError("the filter must be a single boolean expression")
    return text


def select_sql(source: BladeSource, where: str | None = None, limit: int | None = None,
               order_by_key: bool = False) -> str:
    """``SELECT *`` from the source's table with an optional user filter (validated) and
    limit."""
    return warehouse_sql.filtered_rows(source, validate_filter(where) if where else None,
                                       limit, order_by_key)
