"""Databricks native query parameters (TSparkParameter) -> typed values DuckDB binds."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from databricks.sql.thrift_api.TCLIService import ttypes


class ParameterError(ValueError):
    """A parameter the warehouse cannot bind (bad value for its declared type)."""


def _utc_naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _scalar(type_name: str, text: str | None) -> Any:
    base = (type_name or "STRING").upper().split("(")[0].strip()
    if text is None or base in ("VOID", "NULL"):
        return None
    try:
        if base in ("INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "LONG", "SHORT", "BYTE"):
            return int(text)
        if base in ("DOUBLE", "FLOAT", "REAL"):
            return float(text)
        if base in ("DECIMAL", "DEC", "NUMERIC"):
            return decimal.Decimal(text)
        if base == "BOOLEAN":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if base == "DATE":
            return dt.date.fromisoformat(text)
        if base in ("TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ"):
            return _utc_naive(dt.datetime.fromisoformat(text))
    except (ValueError, decimal.InvalidOperation) as exc:
        raise ParameterError(f"cannot bind {text!r} as {type_name}") from exc
    return text


def _value(param: ttypes.TSparkParameter | ttypes.TSparkParameterValueArg) -> Any:
    arguments = getattr(param, "arguments", None)
    if arguments:
        values = [_value(arg) for arg in arguments]
        if (param.type or "").upper().startswith("MAP"):
            return dict(zip(values[::2], values[1::2], strict=True))
        return values
    raw = param.value
    text = raw.stringValue if isinstance(raw, ttypes.TSparkParameterValue) else raw
    return _scalar(param.type, text)


def bind_values(params: list[ttypes.TSparkParameter] | None) -> dict[str, Any] | list[Any] | None:
    """Named parameters -> {name: value}; positional (ordinal) ones -> [value, ...]."""
    if not params:
        return None
    named = [p for p in params if p.name]
    if named and len(named) != len(params):
        raise ParameterError("named and positional parameters cannot be mixed in one query")
    if named:
        return {p.name: _value(p) for p in params}
    return [_value(p) for p in params]
