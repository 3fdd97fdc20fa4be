"""CatalogClient without a server: NDJSON building, multipart encoding, retries, secrecy."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pyarrow as pa
import pytest

from blade_pipeline.storage.catalog import (
    CatalogAuthError,
    CatalogClient,
    CatalogError,
    CatalogUnavailableError,
    items_to_ndjson,
)

TOKEN = "s3cret-token-value-4242"


def items_table(n: int = 3) -> pa.Table:
    return pa.table({
        "item_id": [f"MAINT-{i}" for i in range(n)],
        "data_type": ["maintenance"] * n,
        "data": [json.dumps({"record_id": i, "note": f'line\n"{i}"'}) for i in range(n)],
        "classification": ["UNCLASS"] * n,
        "last_modified": pa.array([datetime(2024, 6, 1, 12, 0, i, 5, tzinfo=UTC)
                                   for i in range(n)], pa.timestamp("us", tz="UTC")),
        "content_hash": [f"{i:064x}" for i in range(n)],
        "metadata": ['{"source": "databricks"}'] * n,
    })


def test_ndjson_embeds_objects_and_iso_timestamps() -> None:
    lines = items_to_ndjson(items_table()).decode().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first == {
        "item_id": "MAINT-0", "data_type": "maintenance",
        "data": {"record_id": 0, "note": 'line\n"0"'}, "classification": "UNCLASS",
        "last_modified": "2024-06-01T12:00:00.000005Z", "content_hash": "0" * 64,
        "metadata": {"source": "databricks"},
    }


def test_ndjson_escapes_strings_handles_nulls_chunks_and_pretty_json() -> None:
    table = pa.table({
        "item_id": ['we"ird\\id\t\x01é', None],
        "data": ['{\n  "a": 1\n}', None],
        "classification": [None, "SECRET"],
        "last_modified": pa.array([None, datetime(2024, 1, 1)], pa.timestamp("ns")),
    })
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    assert chunked.column("item_id").num_chunks == 2
    rows = [json.loads(x) for x in items_to_ndjson(chunked).decode().split("\n") if x]
    assert rows[0] == {"item_id": 'we"ird\\id\t\x01é', "data": {"a": 1}, "classification": None,
                       "last_modified": None}
    assert rows[1] == {"item_id": None, "data": None, "classification": "SECRET",
                       "last_modified": "2024-01-01T00:00:00.000000Z"}
    assert items_to_ndjson(table.slice(0, 0)) == b""
    with pytest.raises(ValueError, match="data"):
        items_to_ndjson(table.drop_columns(["data"]))


def test_ndjson_from_record_batch_slice() -> None:
    batch = items_table(5).to_batches()[0].slice(2, 2)
    ids = [json.loads(x)["item_id"] for x in items_to_ndjson(batch).decode().splitlines()]
    assert ids == ["MAINT-2", "MAINT-3"]


def test_ndjson_finds_what_needs_escaping_inside_slices_only_there() -> None:
    table = pa.table({"item_id": ["plain", 'quo"te', "ctl\x02"],
                      "data": pa.array(['{"a":1}', '{"b":\n2}', '{"c":3}'], pa.large_string())})
    for start, length in [(1, 1), (2, 1), (1, 2), (0, 1)]:
        part = table.slice(start, length)
        rows = [json.loads(x) for x in items_to_ndjson(part).decode().split("\n") if x]
        assert rows == [{"item_id": i, "data": json.loads(d)} for i, d in
                        zip(part.column("item_id").to_pylist(),
                            part.column("data").to_pylist(), strict=True)]


def test_the_multipart_request_round_trips() -> None:
    sent: list[httpx.Request] = []
    client, _ = client_with(lambda r: sent.append(r) or httpx.Response(200, json={}))
    client._post_multipart("/api/v1/items", {"dataSource": "BLADE:sortie", "metadata": '{"é": 1}'},
                           ("blade_item.json", b'{"x":1}\r\n', "application/json"))
    body, content_type = sent[0].read(), sent[0].headers["content-type"]
    msg = email.message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body,
                                   policy=email.policy.HTTP)
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
    assert parts["dataSource"].get_content() == "BLADE:sortie"
    assert parts["metadata"].get_payload(decode=True).decode() == '{"é": 1}'
    assert parts["file"].get_filename() == "blade_item.json"
    assert parts["file"].get_payload(decode=True) == b'{"x":1}\r\n'


Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, **settings: object) -> tuple[CatalogClient, list[float]]:
    config: dict = {"base_url": "http://catalog.test", "token": TOKEN, "backoff_base_s": 0.2,
                    "backoff_max_s": 1.0, **settings}
    client = CatalogClient(**config)
    client._transport = httpx.MockTransport(handler)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    return client, sleeps


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        nxt = queue.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    return handler, seen


def test_retries_503_and_429_honouring_retry_after() -> None:
    handler, seen = answers(
        httpx.Response(503, json={"error": "unavailable", "reason": "busy"}),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json={"total": 1, "data_sources": {}}),
    )
    client, sleeps = client_with(handler)
    assert client.stats()["total"] == 1
    assert len(seen) == 3
    assert 0.1 <= sleeps[0] <= 0.2  # first backoff: base/2 .. base (equal jitter)
    assert sleeps[1] == 7.0
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seen)


def test_retry_after_is_capped_and_backoff_grows_to_its_max() -> None:
    handler, _ = answers(*[httpx.Response(502)] * 5, httpx.Response(200, json={"items": {}}))
    client, sleeps = client_with(handler, max_attempts=6)
    assert client.lookup(["A"]) == {}
    caps = [0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(cap / 2 <= s <= cap for s, cap in zip(sleeps, caps, strict=True)), sleeps
    handler, _ = answers(httpx.Response(429, headers={"Retry-After": "3600"}),
                         httpx.Response(200, json={"items": {}}))
    client, sleeps = client_with(handler, max_retry_after_s=5.0)
    client.lookup(["A"])
    assert sleeps == [5.0]


def test_connect_errors_are_retried_then_reported() -> None:
    handler, seen = answers(*[httpx.ConnectError("refused")] * 3)
    client, sleeps = client_with(handler)
    with pytest.raises(CatalogUnavailableError) as caught:
        client.exists("A")
    assert len(seen) == 3 and len(sleeps) == 2
    assert "http://catalog.test/api/v1/items/A" in str(caught.value)
    assert "after 3 attempts" in str(caught.value) and "ConnectError" in str(caught.value)


def test_transient_status_exhaustion_names_status_and_reason() -> None:
    handler, _ = answers(*[httpx.Response(503, json={"error": "unavailable",
                                                     "reason": "store locked"})] * 3)
    client, _ = client_with(handler)
    with pytest.raises(CatalogUnavailableError) as caught:
        client.stats()
    assert caught.value.status == 503
    assert "HTTP 503 unavailable: store locked" in str(caught.value)


@pytest.mark.parametrize(("status", "error"), [(401, CatalogAuthError), (403, CatalogAuthError),
                                               (400, CatalogError), (422, CatalogError),
                                               (413, CatalogError)])
def test_client_errors_are_not_retried(status: int, error: type[Exception]) -> None:
    handler, seen = answers(httpx.Response(status, json={"error": "x", "reason": "bad thing"}))
    client, sleeps = client_with(handler)
    with pytest.raises(error) as caught:
        client.lookup(["A"])
    assert len(seen) == 1 and not sleeps
    assert f"HTTP {status} x: bad thing" in str(caught.value)
    assert not isinstance(caught.value, CatalogUnavailableError)


def test_404_means_absent_for_get_and_exists() -> None:
    client, _ = client_with(lambda r: httpx.Response(404, json={"error": "not_found"}))
    assert client.get("A/B") is None
    assert client.exists("A/B") is False


def test_item_ids_are_url_quoted() -> None:
    handler, seen = answers(httpx.Response(200))
    client, _ = client_with(handler)
    assert client.exists("NSN 1560/01#1")
    assert seen[0].url.raw_path == b"/api/v1/items/NSN%201560%2F01%231"


def test_lookup_is_chunked() -> None:
    chunks: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = json.loads(request.content)["item_ids"]
        chunks.append(ids)
        return httpx.Response(200, json={"items": {i: "h" for i in ids if i != "B"}})

    client, _ = client_with(handler, lookup_chunk_size=2)
    assert client.lookup(pa.array(["A", "B", "C", "D", "E"])) == dict.fromkeys("ACDE", "h")
    assert chunks == [["A", "B"], ["C", "D"], ["E"]]


def test_upload_batches_slices_and_reports_offsets() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        n = request.content.count(b'{"item_id":')
        sizes.append(n)
        return httpx.Response(200, json={"received": n, "created": n, "updated": 0,
                                         "unchanged": 0, "rejected": []})

    client, _ = client_with(handler, batch_size=2)
    results = list(client.upload_batches(items_table(5), "BLADE:maintenance"))
    assert sizes == [2, 2, 1]
    assert [r.offset for r in results] == [0, 2, 4]
    total = sum(results[1:], results[0])
    assert (total.created, total.items, total.accepted) == (5, 5, 5)
    assert client.upload_batch(items_table(0), "BLADE:maintenance").items == 0
    assert sizes == [2, 2, 1]  # an empty table sends nothing


def test_token_never_in_errors_logs_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    echo = {"error": "forbidden", "reason": f"token {TOKEN} is wrong"}
    handler, _ = answers(httpx.Response(500, text=f"boom {TOKEN}"),
                         httpx.ConnectError(f"failed with {TOKEN}"),
                         httpx.Response(503, json=echo), httpx.Response(403, json=echo))
    client, _ = client_with(handler, max_attempts=4)
    with caplog.at_level(logging.DEBUG), pytest.raises(CatalogAuthError) as caught:
        client.stats()
    texts = [str(caught.value), repr(caught.value), str(caught.value.reason), caplog.text,
             repr(client), str(client)]
    warnings = [r for r in caplog.records if r.name.endswith("blade.catalog")]
    assert len(warnings) == 3  # one per retry
    assert "***" in str(caught.value)
    for text in texts:
        assert TOKEN not in text


def test_token_is_stripped_and_empty_token_sends_no_header() -> None:
    handler, seen = answers(httpx.Response(200, json={"items": {}}),
                            httpx.Response(401, json={"error": "unauthorized",
                                                      "reason": "missing bearer token"}))
    client, _ = client_with(handler, token=f"  {TOKEN}\n")
    client.lookup(["A"])
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    anonymous, _ = client_with(handler, token="")
    with pytest.raises(CatalogAuthError, match="HTTP 401"):
        anonymous.lookup(["A"])
    assert "Authorization" not in seen[1].headers


def test_request_rate_limit_spaces_requests() -> None:
    client, sleeps = client_with(lambda r: httpx.Response(200, json={"items": {}}),
                                 max_requests_per_s=4.0)
    client._clock = lambda: 100.0  # frozen clock: every request after the first must wait
    for _ in range(4):
        client.lookup(["A"])
    assert sleeps == [0.25, 0.5, 0.75]
    unlimited, no_sleeps = client_with(lambda r: httpx.Response(200, json={"items": {}}))
    for _ in range(4):
        unlimited.lookup(["A"])
    assert no_sleeps == []
