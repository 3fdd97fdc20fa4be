"""Validate one BLADE item as the catalog receives it.

An item is a JSON object with a string ``item_id`` and an object ``data``; ``data_type``,
``classification``, ``last_modified`` (ISO-8601), ``content_hash`` (opaque string) and
``metadata`` (object) are optional and type-checked. Unknown keys are kept as sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, NamedTuple

MAX_ID_LENGTH = 256
MAX_HASH_LENGTH = 128
MAX_SHORT_TEXT = 256
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f/]")
MAX_DEPTH = 64
OPTIONAL_STRINGS = ("data_type", "classification", "last_modified", "content_hash")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DOT_SEGMENTS = (".", "..")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_no_constants).decode


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON (0 for a scalar)."""
    stack, deepest = [(value, 1)], 0
    while stack:
        node, level = stack.pop()
        children = node.values() if type(node) is dict else node if type(node) is list else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def loads_strict(text: str) -> Any:
    """Decode standard JSON: no NaN/Infinity, no lone surrogates, at most MAX_DEPTH deep.

    Raises ValueError with the reason."""
    try:
        value = _decode(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if (text.count("[") + text.count("{") > MAX_DEPTH) and _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone UTF-16 surrogate escape in a string") from None
    return value


class ItemError(ValueError):
    """One item is invalid; ``field`` names the offending key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


RecordTuple = tuple[str, str, str | None, str | None, str | None, str]
"""item_id, content_hash, data_type, classification, last_modified, doc (what the store takes)"""


class ItemRecord(NamedTuple):
    """A validated item, ready for the store. ``doc`` is the item's JSON object text."""

    item_id: str
    content_hash: str
    data_type: str | None
    classification: str | None
    last_modified: str | None
    doc: str


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def default_content_hash(data: dict[str, Any]) -> str:
    """sha256 (hex) of ``data`` as canonical JSON text (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expected_data_type(data_source: str) -> str | None:
    """``BLADE:<type>`` data sources fix the items' ``data_type``; others do not."""
    prefix, sep, rest = data_source.partition(":")
    return rest if sep and prefix == "BLADE" else None


def validate_item(obj: Any, doc: str, data_type_required: str | None = None) -> ItemRecord:
    """Check one decoded item; ``doc`` is its JSON text as it will be stored."""
    if type(obj) is not dict:
        raise ItemError("item", f"must be a JSON object, got {json_type(obj)}")
    item_id = obj.get("item_id")
    if type(item_id) is not str:
        got = "missing" if item_id is None else f"must be a string, got {json_type(item_id)}"
        raise ItemError("item_id", got)
    if not item_id or len(item_id) > MAX_ID_LENGTH or _BAD_ID_CHARS.search(item_id):
        raise ItemError(
            "item_id", f"must be 1-{MAX_ID_LENGTH} characters without '/' or control characters"
        )
    if item_id in _DOT_SEGMENTS:
        raise ItemError("item_id", f"{item_id!r} is not allowed (a URL path dot-segment)")
    data = obj.get("data")
    if type(data) is not dict:
        got = "missing" if data is None else f"must be a JSON object, got {json_type(data)}"
        raise ItemError("data", got)
    for key in OPTIONAL_STRINGS:
        value = obj.get(key)
        if value is not None and (type(value) is not str or len(value) > MAX_SHORT_TEXT):
            raise ItemError(key, f"must be a string of at most {MAX_SHORT_TEXT} characters, "
                                 f"got {json_type(value)}")
    metadata = obj.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise ItemError("metadata", f"must be a JSON object, got {json_type(metadata)}")
    last_modified = obj.get("last_modified")
    if last_modified is not None:
        try:
            datetime.fromisoformat(last_modified)
        except ValueError:
            raise ItemError("last_modified",
                            f"not an ISO-8601 timestamp: {last_modified[:40]!r}") from None
    data_type = obj.get("data_type")
    if data_type_required is not None and data_type is not None and data_type != data_type_required:
        raise ItemError("data_type", f"{data_type[:40]!r} does not match dataSource "
                                     f"'BLADE:{data_type_required}'")
    content_hash = obj.get("content_hash")
    if content_hash is None:
        content_hash = default_content_hash(data)
    elif not content_hash or len(content_hash) > MAX_HASH_LENGTH:
        raise ItemError("content_hash", f"must be 1-{MAX_HASH_LENGTH} characters")
    return ItemRecord(item_id, content_hash, data_type or data_type_required,
                      obj.get("classification"), last_modified, doc)
