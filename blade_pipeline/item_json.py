"""Item ``data`` (canonical JSON) and ``content_hash`` (sha256) of Arrow rows in one native pass.

The C kernel (``_item_json.c``, built by ``pip install``) writes the same bytes as DuckDB's
``to_json(struct_pack(...))`` for strings, booleans, integers, floats, decimals (128-bit),
dates and timestamps without time zone (years 1-9999), hashes each row as it is written and
releases the GIL.
:func:`encode` answers ``None`` when the kernel is not built or a column or value is outside
what it writes; the item builder then uses DuckDB, so both paths give the same items.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

try:
    from blade_pipeline import _item_json
except ImportError:  # the build is optional: no compiler or OpenSSL headers on this machine
    _item_json = None

#: fixed-width Arrow types -> the kernel's name for them (its kind codes are module constants)
_FIXED_KINDS = {pa.bool_(): "BOOL", pa.int8(): "INT8", pa.int16(): "INT16",
                pa.int32(): "INT32", pa.int64(): "INT64", pa.float32(): "FLOAT32",
                pa.float64(): "FLOAT64", pa.date32(): "DATE32"}
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}


NOT_BUILT = ("the item JSON kernel (blade_pipeline._item_json) is not built: items are written "
             "by DuckDB (same bytes, ~2x the CPU). Install gcc, the Python headers and "
             "libssl-dev, then `pip install -e .` again.")


def available() -> bool:
    """Whether the native kernel was built."""
    return _item_json is not None


def _address(buffer: pa.Buffer | None) -> int:
    return buffer.address if buffer is not None else 0


def _kind(dtype: pa.DataType) -> tuple[str, int] | None:
    """(kind name, timestamp multiplier to microseconds) the kernel writes ``dtype`` as, or
    None."""
    if pa.types.is_string(dtype):
        return "UTF8", 0
    if pa.types.is_large_string(dtype):
        return "LARGE_UTF8", 0
    if pa.types.is_timestamp(dtype):
        if dtype.tz is not None or dtype.unit not in _MICROS:
            return None
        return "TIMESTAMP", _MICROS[dtype.unit]
    if pa.types.is_decimal128(dtype):  # DuckDB: a double up to 15 digits, else the digits
        precision, scale = dtype.precision, dtype.scale
        if precision <= 15 and 0 <= scale <= precision:
            return "DECIMAL_DOUBLE", scale
        if 0 <= scale < precision:  # DECIMAL(p, p) it prints without a leading 0: its own
            return "DECIMAL_TEXT", scale
        return None
    name = _FIXED_KINDS.get(dtype)
    return (name, 0) if name is not None else None


def _column_spec(name: str, array: pa.Array) -> tuple | None:
    """What the kernel reads of one column, or None for a type it does not write."""
    kind = _kind(array.type)
    if kind is None:
        return None
    buffers = array.buffers()
    validity = _address(buffers[0]) if array.null_count else 0
    strings = _address(buffers[2]) if kind[0] in ("UTF8", "LARGE_UTF8") else 0
    return (_item_json.escape_key(name.encode()), getattr(_item_json, kind[0]), array.offset,
            validity, _address(buffers[1]), strings, kind[1])


def encode(batch: pa.RecordBatch, columns: list[str], keep: pa.BooleanArray | None = None
           ) -> tuple[pa.Array, pa.Array] | None:
    """``(data, content_hash)`` of the rows of ``batch`` where ``keep`` is true (all if None):
    each row's ``columns`` as a JSON object in that order, and its lower-case hex sha256.
    None when the kernel cannot write these columns or values exactly as DuckDB does."""
    if _item_json is None:
        return None
    specs = []
    for name in columns:
        spec = _column_spec(name, batch.column(name))
        if spec is None:
            return None
        specs.append(spec)
    keep_args = (0, 0, 0)
    if keep is not None:
        keep_buffers = keep.buffers()
        keep_args = (_address(keep_buffers[1]),
                     _address(keep_buffers[0]) if keep.null_count else 0, keep.offset)
    try:
        kept, offsets, data, hexes = _item_json.encode(batch.num_rows, specs, *keep_args)
    except _item_json.Unsupported:
        return None
    json_text = pa.Array.from_buffers(pa.large_string(), kept,
                                      [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    hash_offsets = np.arange(0, 64 * kept + 1, 64, dtype=np.int32)
    hashes = pa.Array.from_buffers(pa.string(), kept,
                                   [None, pa.py_buffer(hash_offsets), pa.py_buffer(hexes)])
    return json_text, hashes
