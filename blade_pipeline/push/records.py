"""A pushed batch's body -> Arrow records of the source's declared columns, or a refusal.

Two bodies: NDJSON (``application/x-ndjson``: one JSON object per line, parsed by Arrow's JSON
reader against the declared schema) and an Arrow IPC stream
(``application/vnd.apache.arrow.stream``: its columns cast to the declared types). A batch is
atomic: one bad record refuses it whole, naming the first bad line (or record) and field.
Rows that parse but break the data type's checks are not refused here: they reach staging and
its quarantine like any source's rows. The log stores a batch as one zstd-compressed Arrow IPC
stream.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pj

from blade_pipeline.config.sources import PushEndpoint

NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CONTENT_TYPES = (NDJSON, ARROW_STREAM)


class BadBatch(ValueError):
    """A body refused whole; the message names the first bad line/record and field."""


def _wire_type(declared: pa.DataType) -> pa.DataType:
    """What Arrow's JSON reader reads a declared column as (dates come as text)."""
    return pa.string() if pa.types.is_date(declared) else declared


def parse_ndjson(body: bytes, endpoint: PushEndpoint) -> pa.Table:
    """The records of an NDJSON body, typed as the endpoint declares (:class:`BadBatch`)."""
    if not body.strip():
        raise BadBatch("empty body: no records")
    schema = endpoint.arrow_schema()
    wire = pa.schema([f.with_type(_wire_type(f.type)) for f in schema])
    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(block_size=max(len(body), 1 << 16)),
            parse_options=pj.ParseOptions(explicit_schema=wire,
                                          unexpected_field_behavior="error"))
    except pa.ArrowInvalid as exc:
        raise BadBatch(_first_bad_line(body, endpoint) or f"not NDJSON: {exc}") from None
    try:
        return _typed(table, schema)
    except BadBatch:
        raise BadBatch(_first_bad_line(body, endpoint) or "a value does not fit its column"
                       ) from None


def parse_arrow(body: bytes, endpoint: PushEndpoint) -> pa.Table:
    """The records of an Arrow IPC stream body, cast to the declared types (:class:`BadBatch`)."""
    try:
        table = ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadBatch(f"not an Arrow IPC stream: {exc}") from None
    return conform(table, endpoint)


def conform(table: pa.Table, endpoint: PushEndpoint) -> pa.Table:
    """Arrow records cast to the declared columns (an absent one is NULL; an undeclared one,
    or a value that does not cast, refuses the batch)."""
    if table.num_rows == 0:
        raise BadBatch("empty batch: no records")
    schema = endpoint.arrow_schema()
    extra = [name for name in table.column_names if name not in schema.names]
    if extra:
        raise BadBatch(f"field {extra[0]!r} is not a column of this source "
                       f"(columns: {', '.join(schema.names)})")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BadBatch(_first_bad_value(column, field, "record") or
                           f"field {field.name!r}: {column.type} does not cast to "
                           f"{field.type}: {exc}") from None
    return pa.Table.from_arrays(columns, schema=schema)


def _typed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast the wire columns (text dates) to the declared types."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise BadBatch(f"field {field.name!r} is not {field.type}") from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _first_bad_value(column: pa.ChunkedArray, field: pa.Field, unit: str) -> str | None:
    """Error path only: the first value of ``column`` that does not cast, by position."""
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            continue
        try:
            pc.cast(pa.array([value], column.type), field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return f"{unit} {i + 1}: field {field.name!r}: {value!r} is not {field.type}"
    return None


def _read_one(line: bytes, schema: pa.Schema) -> pa.Table:
    """One line through the same reader and casts as a whole body."""
    wire = pa.schema([f.with_type(_wire_type(f.type)) for f in schema])
    table = pj.read_json(io.BytesIO(line), parse_options=pj.ParseOptions(
        explicit_schema=wire, unexpected_field_behavior="error"))
    for field in schema:
        table.column(field.name).cast(field.type)
    return table


def _first_bad_line(body: bytes, endpoint: PushEndpoint) -> str | None:
    """Error path only: the first line the reader refuses, and the field it refuses."""
    schema = endpoint.arrow_schema()
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            return f"line {number}: not JSON ({exc.msg})"
        if not isinstance(record, dict):
            return f"line {number}: not a JSON object"
        for name, value in record.items():
            if name not in schema.names:
                return (f"line {number}: field {name!r} is not a column of this source "
                        f"(columns: {', '.join(schema.names)})")
            field = schema.field(name)
            try:
                _read_one(json.dumps({name: value}).encode(), pa.schema([field]))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return f"line {number}: field {name!r}: {value!r} is not {field.type}"
    return None


def to_log_payload(table: pa.Table) -> bytes:
    """One zstd-compressed Arrow IPC stream: how the log stores a batch."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema,
                        options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_log_payload(payload: bytes) -> pa.Table:
    """A batch as the log stores it."""
    return ipc.open_stream(pa.BufferReader(payload)).read_all()
