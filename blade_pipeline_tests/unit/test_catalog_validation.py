"""Item validation and NDJSON parsing of the catalog service (fast and exact paths agree)."""

from __future__ import annotations

import hashlib
import json

import pytest

from blade_pipeline.devservices.catalog import ndjson
from blade_pipeline.devservices.catalog.ndjson import parse_ndjson
from blade_pipeline.devservices.catalog.validation import (
    MAX_DEPTH,
    ItemError,
    default_content_hash,
    loads_strict,
    validate_item,
)

GOOD = {"item_id": "MAINT-1", "data_type": "maintenance", "data": {"b": 1, "a": "x"},
        "classification": "UNCLASS", "last_modified": "2024-06-01T12:00:00Z",
        "content_hash": "abc", "metadata": {"source": "databricks"}}


def line(**changes: object) -> str:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_default_hash_is_sha256_of_canonical_data() -> None:
    expected = hashlib.sha256(b'{"a":"x","b":1}').hexdigest()
    assert default_content_hash({"b": 1, "a": "x"}) == expected
    record = validate_item({**GOOD, "content_hash": None}, "{}")
    assert record.content_hash == expected


def test_valid_item_keeps_sent_hash_and_fields() -> None:
    record = validate_item(GOOD, "DOC", "maintenance")
    assert record == ("MAINT-1", "abc", "maintenance", "UNCLASS", "2024-06-01T12:00:00Z", "DOC")


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"item_id": ...}, "item_id", "missing"),
    ({"item_id": 7}, "item_id", "string, got number"),
    ({"item_id": ""}, "item_id", "1-256"),
    ({"item_id": "a/b"}, "item_id", "'/'"),
    ({"item_id": "a\nb"}, "item_id", "control"),
    ({"item_id": "x" * 257}, "item_id", "1-256"),
    ({"data": ...}, "data", "missing"),
    ({"data": [1]}, "data", "object, got array"),
    ({"data": "{}"}, "data", "object, got string"),
    ({"metadata": 5}, "metadata", "object, got number"),
    ({"classification": True}, "classification", "got boolean"),
    ({"last_modified": "yesterday"}, "last_modified", "ISO-8601"),
    ({"content_hash": ""}, "content_hash", "1-128"),
    ({"data_type": "sortie"}, "data_type", "does not match"),
])
def test_invalid_items_name_the_field(changes: dict, field: str, words: str) -> None:
    obj = json.loads(line(**changes))
    with pytest.raises(ItemError) as caught:
        validate_item(obj, "{}", "maintenance")
    assert caught.value.field == field
    assert words in caught.value.reason


@pytest.mark.parametrize(("text", "words"), [
    ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"), ('{"a": "\\ud800"}', "surrogate"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "deeper"),
    ("[" * 5000 + "]" * 5000, "deeper"), ("{bad", "Expecting"),
])
def test_loads_strict_rejects_non_standard_json(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        loads_strict(text)


def test_loads_strict_accepts_surrogate_pairs_and_moderate_depth() -> None:
    assert loads_strict('"\\ud83d\\ude00"') == "\U0001F600"
    assert loads_strict("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_batch_keeps_good_lines_and_reports_bad_ones() -> None:
    body = "\n".join([
        line(item_id="A-1"), "", "  ", "{not json", "[1,2]", line(item_id=...),
        line(item_id="A-2", data="x"), line(item_id="A-3"),
    ]).encode() + b"\n\xff\xfe\n"
    records, rejected = parse_ndjson(body, "BLADE:maintenance")
    assert [r[0] for r in records] == ["A-1", "A-3"]
    assert [(r.line, r.item_id) for r in rejected] == [
        (4, None), (5, None), (6, None), (7, "A-2"), (9, None)]
    assert "invalid JSON" in rejected[0].reason
    assert "item_id: missing" in rejected[2].reason
    assert "data: must be a JSON object" in rejected[3].reason
    assert "UTF-8" in rejected[4].reason


def test_fast_path_used_for_clean_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_exact(*args: object) -> None:
        raise AssertionError("exact path used for a clean batch")

    monkeypatch.setattr(ndjson, "_exact", no_exact)
    body = "\r\n".join(line(item_id=f"A-{i}") for i in range(50)).encode()
    records, rejected = parse_ndjson(b"\xef\xbb\xbf" + body + b"\n\n", "BLADE:maintenance")
    assert len(records) == 50 and not rejected
    assert records[0][5] == line(item_id="A-0")


TRICKY_LINES = [
    line(), line(content_hash=None), line(data_type=None), line(metadata=None),
    line(last_modified="2024-06-01"), line(last_modified="2024-13-45T00:00:00"),
    line(item_id="x" * 256), line(item_id="x" * 257), line(item_id="a\u0000b"),
    line(item_id="é€😀"), line(classification="c" * 257), line(content_hash="h" * 129),
    line(data={"deep": [[[[1]]]]}), line(data={"x": "[" * 70}),
    line(data={"d": json.loads("[" * 70 + "]" * 70)}),
    line(extra={"kept": True}), line(data={}), '{"item_id":"A","data":{}}{"item_id":"B","data":{}}',
    '{"item_id":"A","data":{},"item_id":"B"}', '{"item_id":"A","data":{"v":NaN}}',
    '{"item_id":"A","data":{"s":"\\ud800"}}', '{"item_id":"A","data":{"s":"\\ud83d\\ude00"}}',
    '{"item_id":"A","data":{"n":1e999}}', '"just a string"', "{}",
    "null", 'null{"item_id":"A","data":{}}',  # pyarrow 26 segfaults if Arrow sees these first
    '{"item_id":"A","data":{}} trailing', '{"item_id":"A","data":{"t":"\t"}}',
    line(data_type="sortie"),
]


@pytest.mark.parametrize("text", TRICKY_LINES)
def test_fast_path_agrees_with_exact_path(text: str) -> None:
    body = (text + "\n" + line(item_id="OK-1")).encode()
    lines = ndjson._lines(body)
    exact = ndjson._exact(lines, "maintenance")
    fast = ndjson._fast(body, lines, "maintenance")
    if fast is not None:
        assert not exact[1], f"fast path accepted what the exact path rejects: {exact[1]}"
        assert [tuple(r) for r in fast] == [tuple(r) for r in exact[0]]
