"""Arrow results as a Databricks SQL warehouse returns them over Thrift.

DuckDB hands out Arrow types the connector cannot take (dictionary, unsigned, time, large
strings, nanosecond timestamps); they are cast to what Databricks itself would send. The
Thrift result schema (``TTableSchema``) is derived from the final Arrow schema.
"""

from __future__ import annotations

import pyarrow as pa
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
    type_id = next(tid for check, tid in _PRIMITIVE_IDS if check(dtype))
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
