"""The guard on user-supplied filters, and the filtered query built from one.

User filters (``--where``, the query job's ``where``) must be what a Databricks SQL warehouse
would run as a WHERE clause: **one Databricks boolean expression** (read with sqlglot's
``databricks`` dialect and Databricks' built-in functions: ``blade_pipeline.databricks_sql``),
no statement separator, no comments, nothing that writes. What passes here is what Databricks
runs; a DuckDB-only function (``regexp_matches``) is refused here, not in production.
Values of partition bounds always travel as native query parameters, never as text.
"""

from __future__ import annotations

from sqlglot import exp

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.databricks_sql import DatabricksSqlError, parse_condition
from blade_pipeline.sources import sql as source_sql

_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
           exp.Command, exp.TruncateTable, exp.Use, exp.Set)
_NOT_BOOLEAN = (exp.Literal, exp.Column, exp.Star, exp.Array, exp.Struct, exp.Tuple)


class UnsafeFilterError(ValueError):
    """A user filter that is not a single Databricks boolean expression."""


def validate_filter(where: str) -> str:
    """Return ``where`` stripped if it is one safe Databricks boolean expression; raise
    UnsafeFilterError (saying why, with Databricks' error class) otherwise."""
    text = where.strip()
    if not text:
        raise UnsafeFilterError("the filter is empty")
    try:
        tree = parse_condition(text)
    except DatabricksSqlError as exc:
        raise UnsafeFilterError(f"the filter is not a Databricks SQL expression: {exc}"
                                ) from None
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise UnsafeFilterError(f"{node.key.upper()} is not allowed in a filter: a filter "
                                    "is a boolean expression")
    if isinstance(tree, _NOT_BOOLEAN):
        raise UnsafeFilterError(f"the filter {text!r} is a value, not a condition (e.g. "
                                "`priority = 'HIGH'`)")
    return text


def select_sql(source: BladeSource, where: str | None = None, limit: int | None = None,
               order_by_key: bool = False) -> str:
    """``SELECT *`` from the source's table with an optional user filter (validated) and
    limit."""
    return source_sql.filtered_rows(source, validate_filter(where) if where else None,
                                       limit, order_by_key)
