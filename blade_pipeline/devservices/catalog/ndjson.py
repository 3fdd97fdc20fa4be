"""Parse an NDJSON batch into validated item records and per-line rejections.

Two paths, same result. The fast path reads the whole file with Arrow's JSON reader and checks
every rule with compute kernels; it accepts a batch only when every line is valid. Otherwise
(or on anything unusual) the exact path decodes and validates line by line with the stdlib,
keeping the good lines and giving each bad one its line number and reason.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from blade_pipeline.devservices.catalog.validation import (
    MAX_DEPTH,
    MAX_HASH_LENGTH,
    MAX_ID_LENGTH,
    MAX_SHORT_TEXT,
    OPTIONAL_STRINGS,
    ItemError,
    RecordTuple,
    default_content_hash,
    expected_data_type,
    loads_strict,
    validate_item,
)

_SCHEMA = pa.schema(
    [("item_id", pa.string())] + [(key, pa.string()) for key in OPTIONAL_STRINGS]
    + [("data", pa.struct([])), ("metadata", pa.struct([]))]
)
_PARSE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
_JSON_WS = " \t\r"
_DOT_SEGMENTS = pa.array([".", ".."])


@dataclass(slots=True)
class Rejection:
    """A batch line the catalog refused (1-based ``line`` in the NDJSON file)."""

    line: int
    item_id: str | None
    reason: str


def parse_ndjson(body: bytes, data_source: str, refuse: re.Pattern[str] | None = None
                 ) -> tuple[list[RecordTuple], list[Rejection]]:
    """Validate every non-blank line: good lines become records, bad ones rejections (and
    valid ones whose item_id ``refuse`` matches: the catalog's policy refuses them)."""
    lines = _lines(body)
    required_type = expected_data_type(data_source)
    records = None if refuse is not None else _fast(body, lines, required_type)
    if records is not None:
        return records, []
    return _exact(lines, required_type, refuse)


def _lines(body: bytes) -> list[str | None]:
    """Body split into text lines; a line that is not UTF-8 becomes None."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff").split("\n")  # type: ignore[return-value]
    except UnicodeDecodeError:
        out: list[str | None] = []
        for raw in body.split(b"\n"):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        return out


def _exact(lines: list[str | None], required_type: str | None,
           refuse: re.Pattern[str] | None = None) -> tuple[list[RecordTuple], list[Rejection]]:
    records: list[RecordTuple] = []
    rejected: list[Rejection] = []
    for number, line in enumerate(lines, 1):
        if line is None:
            rejected.append(Rejection(number, None, "line is not valid UTF-8"))
            continue
        doc = line.strip(_JSON_WS)
        if not doc:
            continue
        try:
            obj = loads_strict(doc)
        except ValueError as exc:
            rejected.append(Rejection(number, None, f"invalid JSON: {exc}"))
            continue
        try:
            record = validate_item(obj, doc, required_type)
            if refuse is not None and refuse.search(record[0]):
                rejected.append(Rejection(number, record[0], "item_id: refused by this "
                                          f"catalog's policy (matches {refuse.pattern!r})"))
                continue
            records.append(record)
        except ItemError as exc:
            item_id = obj.get("item_id") if type(obj) is dict else None
            rejected.append(Rejection(number, item_id if type(item_id) is str else None, str(exc)))
    return records, rejected


def _fast(body: bytes, lines: list[str | None], required_type: str | None
          ) -> list[RecordTuple] | None:
    """Records for a batch whose every line is valid, or None to take the exact path."""
    if None in lines or b"NaN" in body or b"Infinity" in body:  # the stdlib accepts those
        return None
    docs = [doc for line in lines if (doc := line.strip(_JSON_WS))]  # type: ignore[union-attr]
    # Only object lines reach Arrow: pyarrow 26 read_json segfaults on a body starting "null".
    if not docs or not all(doc[0] == "{" and doc[-1] == "}" for doc in docs):
        return None
    try:
        table = pa_json.read_json(
            io.BytesIO(body), parse_options=_PARSE,
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(body) + 1))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if (table.num_rows != len(docs) or not _all_valid(table, required_type)
            or not _shallow(body, docs, table)):
        return None
    cols = {name: table.column(name).to_pylist() for name in ("item_id", *OPTIONAL_STRINGS)}
    for stamp in cols["last_modified"]:
        if stamp is not None:
            try:
                datetime.fromisoformat(stamp)
            except ValueError:
                return None
    hashes = cols["content_hash"]
    if None in hashes:
        hashes = [h if h is not None else default_content_hash(loads_strict(doc)["data"])
                  for h, doc in zip(hashes, docs, strict=True)]
    types = cols["data_type"]
    if required_type is not None and None in types:
        types = [t or required_type for t in types]
    return list(zip(cols["item_id"], hashes, types, cols["classification"],
                    cols["last_modified"], docs, strict=True))


def _all_valid(table: pa.Table, required_type: str | None) -> bool:
    """Every rule of ``validate_item``, vectorised."""
    ids = table.column("item_id")
    if ids.null_count or table.column("data").null_count:
        return False
    if not _lengths_within(ids, 1, MAX_ID_LENGTH) or pc.any(
            pc.match_substring_regex(ids, r"[\x00-\x1f\x7f/]")).as_py() or pc.any(
            pc.is_in(ids, value_set=_DOT_SEGMENTS)).as_py():
        return False
    for key in OPTIONAL_STRINGS:
        if not _lengths_within(table.column(key), 0, MAX_SHORT_TEXT):
            return False
    if not _lengths_within(table.column("content_hash"), 1, MAX_HASH_LENGTH):
        return False
    types = table.column("data_type")
    return required_type is None or not pc.any(pc.not_equal(types, required_type)).as_py()


def _shallow(body: bytes, docs: list[str], table: pa.Table) -> bool:
    """No line nests deeper than MAX_DEPTH (bounded by its count of '{' and '[').

    Cheap test first: every line holds at least 2 brackets (the item, its data) plus 1 when it
    has metadata, so no line holds more than ``total - sum(minimums) + 3``."""
    total = body.count(b"{") + body.count(b"[")
    floor = 3 * len(docs) - table.column("metadata").null_count
    if total - floor + 3 <= MAX_DEPTH:
        return True
    return max(doc.count("{") + doc.count("[") for doc in docs) <= MAX_DEPTH


def _lengths_within(values: pa.ChunkedArray, low: int, high: int) -> bool:
    """True if every non-null value has ``low``..``high`` characters."""
    if values.null_count == len(values):
        return True
    bounds = pc.min_max(pc.utf8_length(values))
    return low <= bounds["min"].as_py() and bounds["max"].as_py() <= high
