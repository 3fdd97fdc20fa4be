"""Arrow results as a Databricks SQL warehouse returns them over Thrift and the Statement
Execution API.

DuckDB hands out Arrow types the connector cannot take (dictionary, unsigned, time, large
strings, nanosecond timestamps); they are cast to what Databricks itself would send. The
Thrift result schema (``TTableSchema``), the Statement Execution API's column list and its
``JSON_ARRAY`` values are derived from the final Arrow schema.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from databricks.sql.thrift_api.TCLIService import ttypes

_PRIMITIVE_IDS: list[tuple[object, int]] = [
    (pa.types.is_boolean, ttypes.TTypeId.BOOLEAN_TYPE),
    (pa.types.is_int8, ttypes.TTypeId.TINYINT_TYPE),
    (pa.types.is_int16, ttypes.TTypeId.SMALLINT_TYPE),
    (pa.types.is_int32, ttypes.TTypeId.INT_TYPE),
    (pa.types.is_int64, ttypes.TTypeId.BIGINT_TYPE),
    (pa.types.is_float32, ttypes.TTypeId.FLOAT_TYPE),
    (pa.types.is_float64, ttypes.TTypeId.DOUBLE_TYPE),
    (pa.types.is_string, ttypes.TTypeId.STRING_TYPE),
    (pa.types.is_timestamp, ttypes.TTypeId.TIMESTAMP_TYPE),
    (pa.types.is_binary, ttypes.TTypeId.BINARY_TYPE),
    (pa.types.is_decimal, ttypes.TTypeId.DECIMAL_TYPE),
    (pa.types.is_date32, ttypes.TTypeId.DATE_TYPE),
    (pa.types.is_null, ttypes.TTypeId.NULL_TYPE),
    (pa.types.is_list, ttypes.TTypeId.ARRAY_TYPE),
    (pa.types.is_map, ttypes.TTypeId.MAP_TYPE),
    (pa.types.is_struct, ttypes.TTypeId.STRUCT_TYPE),
]


def _type_id(dtype: pa.DataType) -> int:
    return next(tid for check, tid in _PRIMITIVE_IDS if check(dtype))


def client_type(dtype: pa.DataType) -> pa.DataType:
    """The Arrow type the databricks-sql-connector can read for ``dtype``."""
    if pa.types.is_dictionary(dtype):
        return client_type(dtype.value_type)
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype) \
            or pa.types.is_fixed_size_binary(dtype):
        return pa.binary()
    if pa.types.is_uint8(dtype):
        return pa.int16()
    if pa.types.is_uint16(dtype):
        return pa.int32()
    if pa.types.is_uint32(dtype):
        return pa.int64()
    if pa.types.is_uint64(dtype):
        return pa.decimal128(20, 0)
    if pa.types.is_float16(dtype):
        return pa.float32()
    if pa.types.is_timestamp(dtype):
        return pa.timestamp("us", dtype.tz)
    if pa.types.is_date64(dtype):
        return pa.date32()
    if pa.types.is_decimal(dtype) and dtype.precision > 38:
        return pa.string()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) \
            or pa.types.is_fixed_size_list(dtype) or pa.types.is_list_view(dtype):
        return pa.list_(client_type(dtype.value_type))
    if pa.types.is_map(dtype):
        return pa.map_(client_type(dtype.key_type), client_type(dtype.item_type))
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(client_type(f.type)) for f in dtype])
    if any(check(dtype) for check, _ in _PRIMITIVE_IDS):
        return dtype
    return pa.string()  # time, interval, duration, union, extension types


def client_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field cast to a client-readable type (metadata dropped)."""
    return pa.schema([pa.field(f.name, client_type(f.type), f.nullable) for f in schema])


def to_client(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast ``batch`` to ``schema`` (from :func:`client_schema`) when they differ."""
    if batch.schema.equals(schema):
        return batch
    return pa.RecordBatch.from_arrays(
        # Timestamps are truncated to microseconds, the warehouse's precision.
        [col.cast(field.type, safe=not pa.types.is_timestamp(field.type))
         for col, field in zip(batch.columns, schema, strict=True)],
        schema=schema,
    )


def _type_entry(dtype: pa.DataType) -> ttypes.TTypeEntry:
    type_id = _type_id(dtype)
    qualifiers = None
    if type_id == ttypes.TTypeId.DECIMAL_TYPE:
        qualifiers = ttypes.TTypeQualifiers(qualifiers={
            "precision": ttypes.TTypeQualifierValue(i32Value=dtype.precision),
            "scale": ttypes.TTypeQualifierValue(i32Value=dtype.scale),
        })
    return ttypes.TTypeEntry(
        primitiveEntry=ttypes.TPrimitiveTypeEntry(type=type_id, typeQualifiers=qualifiers))


def thrift_schema(schema: pa.Schema) -> ttypes.TTableSchema:
    """TTableSchema for a client-readable Arrow schema."""
    return ttypes.TTableSchema(columns=[
        ttypes.TColumnDesc(columnName=field.name, position=i + 1,
                           typeDesc=ttypes.TTypeDesc(types=[_type_entry(field.type)]))
        for i, field in enumerate(schema)
    ])


def serialize_schema(schema: pa.Schema) -> bytes:
    """IPC schema message, as ``arrowSchema`` carries it."""
    return schema.serialize().to_pybytes()


def ipc_stream(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Buffer:
    """A whole Arrow IPC stream (schema + batches): one cloud-fetch file."""
    def write(sink: pa.NativeFile) -> None:
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)

    measured = pa.MockOutputStream()  # size first: then one allocation and one copy
    write(measured)
    buffer = pa.allocate_buffer(measured.size())
    write(pa.FixedSizeBufferWriter(buffer))
    return buffer


#: Statement Execution API type names that differ from the Thrift ones (``TTypeId`` less _TYPE).
_SEA_NAMES = {ttypes.TTypeId.TINYINT_TYPE: "BYTE", ttypes.TTypeId.SMALLINT_TYPE: "SHORT",
              ttypes.TTypeId.BIGINT_TYPE: "LONG"}


def type_text(dtype: pa.DataType) -> str:
    """Databricks' SQL spelling of a client-readable Arrow type (``DECIMAL(10,2)``,
    ``ARRAY<INT>``, ``TIMESTAMP_NTZ`` for a naive timestamp)."""
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP" if dtype.tz else "TIMESTAMP_NTZ"
    if pa.types.is_list(dtype):
        return f"ARRAY<{type_text(dtype.value_type)}>"
    if pa.types.is_map(dtype):
        return f"MAP<{type_text(dtype.key_type)}, {type_text(dtype.item_type)}>"
    if pa.types.is_struct(dtype):
        return "STRUCT<" + ", ".join(f"{f.name}: {type_text(f.type)}" for f in dtype) + ">"
    if pa.types.is_null(dtype):
        return "VOID"
    return ttypes.TTypeId._VALUES_TO_NAMES[_type_id(dtype)].removesuffix("_TYPE")


def sea_columns(schema: pa.Schema) -> list[dict[str, Any]]:
    """``manifest.schema.columns`` of the Statement Execution API for a client-readable schema
    (``type_name`` as the API names it: ``LONG``, ``SHORT``, ``BYTE``; positions from 0)."""
    columns = []
    for position, field in enumerate(schema):
        tid = _type_id(field.type)
        column = {"name": field.name, "position": position, "type_text": type_text(field.type),
                  "type_name": _SEA_NAMES.get(tid) or
                  ttypes.TTypeId._VALUES_TO_NAMES[tid].removesuffix("_TYPE")}
        if pa.types.is_decimal(field.type):
            column["type_precision"] = field.type.precision
            column["type_scale"] = field.type.scale
        columns.append(column)
    return columns


def _plain(value: Any, dtype: pa.DataType) -> Any:
    """A nested value as JSON data: maps as objects, binary as hex, dates and decimals as text."""
    if value is None:
        return None
    if pa.types.is_map(dtype):
        return {str(k): _plain(v, dtype.item_type) for k, v in value}
    if pa.types.is_struct(dtype):
        return {f.name: _plain(value[f.name], f.type) for f in dtype}
    if pa.types.is_list(dtype):
        return [_plain(v, dtype.value_type) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.date | decimal.Decimal):
        return str(value)
    return value


def json_strings(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """A column's ``JSON_ARRAY`` values: each the string form of its value, or None.

    Scalars are cast by Arrow (timestamps in ISO 8601, zoned ones in UTC with ``Z``; booleans
    ``true``/``false``); binary values are hex (the connector decodes them with
    ``bytes.fromhex``) and nested ones compact JSON, converted value by value.
    """
    dtype = column.type
    if pa.types.is_timestamp(dtype):
        utc = column.cast(pa.timestamp(dtype.unit, "UTC")) if dtype.tz else column
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S" + ("Z" if dtype.tz else "")
                           ).to_pylist()
    if pa.types.is_binary(dtype) or pa.types.is_nested(dtype):
        return [None if v is None else v.hex() if isinstance(v, bytes) else
                json.dumps(_plain(v, dtype), separators=(",", ":"))
                for v in column.to_pylist()]
    return column.cast(pa.string()).to_pylist()
