"""The catalog service over real HTTP (`blade mock-catalog` subprocess on a loopback port)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from blade_pipeline.storage.catalog import items_to_ndjson
from blade_pipeline_tests.integration.catalog_fixtures import (
    CATALOG_TOKEN,
    catalog_service,
    make_items,
)
from blade_pipeline_tests.multipart import encode_multipart
from blade_pipeline_tests.servers import ServerProcess

AUTH = {"Authorization": f"Bearer {CATALOG_TOKEN}"}
ITEM = {"item_id": "ONE-1", "data_type": "maintenance", "data": {"record_id": "1", "x": 1},
        "classification": "UNCLASS", "last_modified": "2024-06-01T12:00:00Z",
        "content_hash": "hash-1", "metadata": {"source": "databricks"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with catalog_service(tmp_path_factory.mktemp("catalog")) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        yield client


def single(http: httpx.Client, item: dict | bytes, source: str = "BLADE:maintenance",
           **form: str) -> httpx.Response:
    raw = item if isinstance(item, bytes) else json.dumps(item).encode()
    body, ctype = encode_multipart({"dataSource": source, **form},
                                   ("blade_item.json", raw, "application/json"))
    return http.post("/api/v1/items", content=body, headers={"Content-Type": ctype})


def batch(http: httpx.Client, ndjson: bytes, source: str = "BLADE:maintenance"
          ) -> httpx.Response:
    body, ctype = encode_multipart({"dataSource": source},
                                   ("items.ndjson", ndjson, "application/x-ndjson"))
    return http.post("/api/v1/items/batch", content=body, headers={"Content-Type": ctype})


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "reason", "field"} and body["reason"]
    return body


def test_health_docs_and_openapi_need_no_token(server: ServerProcess) -> None:
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.base_url + "/docs").status_code == 200
    spec = httpx.get(server.base_url + "/openapi.json").json()
    assert {"/api/v1/items", "/api/v1/items/batch", "/api/v1/items/lookup",
            "/api/v1/items/{item_id}", "/api/v1/stats", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/api/v1/items"]["post"]["requestBody"][
        "content"]
    assert {"get", "head"} <= set(spec["paths"]["/api/v1/items/{item_id}"])


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": "Basic abc"}, 401), ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
])
def test_auth(server: ServerProcess, headers: dict, status: int) -> None:
    for method, path in [("GET", "/api/v1/stats"), ("POST", "/api/v1/items/batch"),
                         ("HEAD", "/api/v1/items/X"), ("POST", "/api/v1/items/lookup")]:
        response = httpx.request(method, server.base_url + path, headers=headers,
                                 content=b"x" * 1000)
        assert response.status_code == status
        if method != "HEAD":
            assert response.json()["field"] == "Authorization"
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_single_upload_created_unchanged_updated(http: httpx.Client) -> None:
    first = single(http, ITEM, classification="CUI", metadata='{"run_id": "r1"}',
                   timestamp="2024-06-02T00:00:00+00:00")
    assert first.status_code == 201
    assert first.json() == {"item_id": "ONE-1", "status": "created", "version": 1,
                            "content_hash": "hash-1"}
    again = single(http, ITEM)
    assert (again.status_code, again.json()["status"], again.json()["version"]) == \
        (200, "unchanged", 1)
    changed = single(http, {**ITEM, "data": {"x": 2}, "content_hash": "hash-2"})
    assert (changed.status_code, changed.json()["status"], changed.json()["version"]) == \
        (200, "updated", 2)
    stored = http.get("/api/v1/items/ONE-1")
    assert stored.headers["ETag"] == '"hash-2"'
    record = stored.json()
    assert (record["version"], record["dataSource"], record["item"]["data"]) == \
        (2, "BLADE:maintenance", {"x": 2})
    head = http.head("/api/v1/items/ONE-1")
    assert (head.status_code, head.headers["X-Item-Version"]) == (200, "2")


def test_keep_newer_leaves_a_later_stored_item_on_both_upload_paths(http: httpx.Client) -> None:
    newer = {**ITEM, "item_id": "KEEP-1", "last_modified": "2024-06-05T00:00:00Z"}
    older = {**newer, "data": {"x": "old"}, "content_hash": "hash-old",
             "last_modified": "2024-06-01T00:00:00Z"}
    assert single(http, newer).json()["status"] == "created"
    kept = single(http, older, keepNewer="true")
    assert (kept.status_code, kept.json()["status"], kept.json()["version"]) == \
        (200, "stale", 1)
    body, ctype = encode_multipart({"dataSource": "BLADE:maintenance", "keepNewer": "true"},
                                   ("items.ndjson", json.dumps(older).encode(),
                                    "application/x-ndjson"))
    answer = http.post("/api/v1/items/batch", content=body, headers={"Content-Type": ctype})
    assert (answer.json()["stale"], answer.json()["updated"]) == (1, 0)
    assert http.get("/api/v1/items/KEEP-1").headers["ETag"] == '"hash-1"'
    replaced = single(http, older)  # without keepNewer: a plain upsert by content hash
    assert (replaced.json()["status"], replaced.json()["version"]) == ("updated", 2)


def test_single_upload_merges_form_parts(http: httpx.Client) -> None:
    item = {**ITEM, "item_id": "ONE-2"}
    single(http, item, classification="CUI", metadata='{"run_id": "r1"}',
           timestamp="2024-06-02T00:00:00Z")
    record = http.get("/api/v1/items/ONE-2").json()
    assert record["classification"] == "CUI"
    assert record["item"]["metadata"] == {"source": "databricks", "run_id": "r1"}
    assert record["item"]["timestamp"] == "2024-06-02T00:00:00Z"


def test_missing_hash_defaults_to_sha256_of_data(http: httpx.Client) -> None:
    item = {k: v for k, v in ITEM.items() if k != "content_hash"} | {"item_id": "ONE-3"}
    expected = hashlib.sha256(b'{"record_id":"1","x":1}').hexdigest()
    assert single(http, item).json()["content_hash"] == expected


def test_get_and_head_of_unknown_item(http: httpx.Client) -> None:
    assert error_of(http.get("/api/v1/items/NOPE"), 404)["error"] == "not_found"
    assert http.head("/api/v1/items/NOPE").status_code == 404


def multipart_without(part: str) -> tuple[bytes, str]:
    fields = {"dataSource": "BLADE:maintenance"}
    if part == "dataSource":
        fields = {}
    body, ctype = encode_multipart(fields, ("blade_item.json", json.dumps(ITEM).encode(),
                                            "application/json"))
    if part == "file":
        body, ctype = encode_multipart(fields, ("x", b"", "text/plain"))
        body = body.replace(b'name="file"', b'name="other"')
    return body, ctype


BAD_SINGLE = [
    # (request kwargs, status, field, words in reason)
    ({"json": ITEM}, 400, "body", "multipart/form-data"),
    ({"data": {"dataSource": "BLADE:maintenance"}}, 400, "body", "multipart/form-data"),
    ("file", 422, "file", "Field required"),
    ("dataSource", 422, "dataSource", "Field required"),
    ({"item": b"{not json"}, 400, "file", "invalid JSON"),
    ({"item": b"\xff\xfe"}, 400, "file", "UTF-8"),
    ({"item": b'{"item_id": "BAD-1", "data": {"v": NaN}}'}, 400, "file", "NaN"),
    ({"item": b"[1, 2]"}, 422, "file", "JSON object"),
    ({"item": {"data": {}}}, 422, "file.item_id", "missing"),
    ({"item": {"item_id": 12, "data": {}}}, 422, "file.item_id", "string, got number"),
    ({"item": {"item_id": "BAD-1", "data": "text"}}, 422, "file.data", "object, got string"),
    ({"item": {"item_id": "BAD-1", "data": {}, "last_modified": 5}}, 422, "file.last_modified",
     "got number"),
    ({"item": {"item_id": "BAD-1", "data": {}, "data_type": "sortie"}}, 422, "file.data_type",
     "does not match"),
    ({"metadata": "{oops"}, 400, "metadata", "invalid JSON"),
    ({"metadata": "[1]"}, 422, "metadata", "JSON object"),
    ({"timestamp": "soon"}, 422, "timestamp", "ISO-8601"),
    ({"source": "bad source!"}, 422, "dataSource", "pattern"),
]


@pytest.mark.parametrize(("case", "status", "field", "words"), BAD_SINGLE)
def test_bad_single_uploads_are_refused_and_apply_nothing(
        http: httpx.Client, case: dict | str, status: int, field: str, words: str) -> None:
    before = http.get("/api/v1/stats").json()["total"]
    if isinstance(case, str):
        body, ctype = multipart_without(case)
        response = http.post("/api/v1/items", content=body, headers={"Content-Type": ctype})
    elif "json" in case or "data" in case:
        response = http.post("/api/v1/items", **case)
    else:
        form = {k: v for k, v in case.items() if k in ("metadata", "timestamp")}
        response = single(http, case.get("item", {**ITEM, "item_id": "BAD-1"}),
                          case.get("source", "BLADE:maintenance"), **form)
    body = error_of(response, status)
    assert body["field"] == field and words in body["reason"], body
    assert http.get("/api/v1/stats").json()["total"] == before
    assert http.head("/api/v1/items/BAD-1").status_code == 404


def test_batch_upload_and_idempotency(http: httpx.Client) -> None:
    items = make_items(3000, prefix="BATCH")
    first = batch(http, items_to_ndjson(items)).json()
    assert (first["received"], first["created"], first["updated"], first["unchanged"],
            first["rejected"]) == (3000, 3000, 0, 0, [])
    again = batch(http, items_to_ndjson(items)).json()
    assert (again["created"], again["unchanged"]) == (0, 3000)
    changed = make_items(1000, prefix="BATCH", revision=1)
    result = batch(http, items_to_ndjson(changed)).json()
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 1000, 0)
    found = http.post("/api/v1/items/lookup",
                      json={"item_ids": ["BATCH-0000000", "BATCH-0002999", "NOPE"]}).json()
    assert found["items"] == {"BATCH-0000000": changed["content_hash"][0].as_py(),
                              "BATCH-0002999": items["content_hash"][2999].as_py()}
    assert http.get("/api/v1/items/BATCH-0000000").json()["version"] == 2
    assert http.get("/api/v1/items/BATCH-0002999").json()["version"] == 1
    with_stamps = http.post("/api/v1/items/lookup", json={
        "item_ids": ["BATCH-0000000", "NOPE"], "include": ["last_modified"]}).json()
    assert with_stamps["items"] == {"BATCH-0000000": changed["content_hash"][0].as_py()}
    assert list(with_stamps["last_modified"]) == ["BATCH-0000000"]
    stamp = with_stamps["last_modified"]["BATCH-0000000"]
    assert dt.datetime.fromisoformat(stamp) == changed["last_modified"][0].as_py()


def test_batch_keeps_good_lines_and_rejects_bad_ones(http: httpx.Client) -> None:
    good = items_to_ndjson(make_items(3, prefix="MIX")).decode().splitlines()
    lines = [good[0], "{broken", json.dumps({"data": {}}), good[1],
             json.dumps({"item_id": 5, "data": {}}), json.dumps({"item_id": "MIX-X", "data": 1}),
             "", json.dumps({"item_id": "MIX-Y", "data": {}, "data_type": "sortie"}), good[2]]
    result = batch(http, "\n".join(lines).encode()).json()
    assert (result["received"], result["created"]) == (8, 3)
    rejected = {r["line"]: r for r in result["rejected"]}
    assert set(rejected) == {2, 3, 5, 6, 8}
    assert "invalid JSON" in rejected[2]["reason"]
    assert rejected[3]["reason"] == "item_id: missing"
    assert "item_id: must be a string" in rejected[5]["reason"]
    assert (rejected[6]["item_id"], rejected[6]["reason"]) == \
        ("MIX-X", "data: must be a JSON object, got number")
    assert "data_type" in rejected[8]["reason"]
    assert http.head("/api/v1/items/MIX-X").status_code == 404
    assert len(http.post("/api/v1/items/lookup", json={"item_ids": [
        "MIX-0000000", "MIX-0000001", "MIX-0000002"]}).json()["items"]) == 3


@pytest.mark.parametrize(("kind", "status", "field"), [
    ("json", 400, "body"), ("no-file", 422, "file"), ("no-source", 422, "dataSource"),
    ("empty", 422, "file"), ("blank-lines", 422, "file"),
])
def test_bad_batch_requests_apply_nothing(http: httpx.Client, kind: str, status: int,
                                          field: str) -> None:
    before = http.get("/api/v1/stats").json()["total"]
    ndjson = items_to_ndjson(make_items(5, prefix="NOPE"))
    if kind == "json":
        response = http.post("/api/v1/items/batch", json={"items": []})
    elif kind in ("no-file", "no-source"):
        fields = {} if kind == "no-source" else {"dataSource": "BLADE:maintenance"}
        body, ctype = encode_multipart(fields, ("items.ndjson", ndjson, "application/x-ndjson"))
        if kind == "no-file":
            body = body.replace(b'name="file"', b'name="data"')
        response = http.post("/api/v1/items/batch", content=body,
                              headers={"Content-Type": ctype})
    else:
        response = batch(http, b"" if kind == "empty" else b"\n \n\t\n")
    assert error_of(response, status)["field"] == field
    assert http.get("/api/v1/stats").json()["total"] == before


def test_oversize_bodies_get_413_and_apply_nothing(tmp_path: Path) -> None:
    with catalog_service(tmp_path, "--max-body-mb", "1") as small, \
            httpx.Client(base_url=small.base_url, headers=AUTH) as http:
        ndjson = items_to_ndjson(make_items(2500, prefix="BIG"))
        assert len(ndjson) > 1024 * 1024
        body, ctype = encode_multipart({"dataSource": "BLADE:maintenance"},
                                       ("items.ndjson", ndjson, "application/x-ndjson"))
        declared = http.post("/api/v1/items/batch", content=body,
                             headers={"Content-Type": ctype})
        assert error_of(declared, 413)["error"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts streamed bytes
            for start in range(0, len(body), 65536):
                yield body[start:start + 65536]

        streamed = http.post("/api/v1/items/batch", content=chunks(),
                             headers={"Content-Type": ctype})
        assert "exceeds the limit of 1048576 bytes" in error_of(streamed, 413)["reason"]
        assert http.get("/api/v1/stats").json()["total"] == 0
        ok = batch(http, items_to_ndjson(make_items(100, prefix="SMALL")))
        assert ok.json()["created"] == 100


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400),
    ({"json": {"item_ids": "A"}}, 422), ({"json": {"item_ids": [1]}}, 422),
    ({"json": {}}, 422), ({"json": {"item_ids": [], "x": 1}}, 422),
    ({"json": {"item_ids": [""]}}, 422),
])
def test_bad_lookups(http: httpx.Client, kwargs: dict, status: int) -> None:
    assert error_of(http.post("/api/v1/items/lookup", **kwargs), status)["field"]


def test_list_pagination_and_stats(http: httpx.Client) -> None:
    batch(http, items_to_ndjson(make_items(25, prefix="PAGE")), "TEST:paging")
    seen, after = [], None
    while True:
        params = {"dataSource": "TEST:paging", "limit": 10, **({"after": after} if after else {})}
        page = http.get("/api/v1/items", params=params).json()
        seen += [item["item_id"] for item in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == [f"PAGE-{i:07d}" for i in range(25)]
    assert http.get("/api/v1/stats").json()["data_sources"]["TEST:paging"] == 25
    for bad in ({"limit": 0}, {"limit": 1001}, {"dataSource": "no spaces"}):
        error_of(http.get("/api/v1/items", params=bad), 422)


def test_16_concurrent_batches_lose_and_duplicate_nothing(http: httpx.Client) -> None:
    distinct = [items_to_ndjson(make_items(1500, start=i * 1500, prefix="CONC"))
                for i in range(16)]
    shared = items_to_ndjson(make_items(1500, prefix="SHARED"))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda body: batch(http, body, "TEST:concurrent").json(),
                                distinct))
        same = list(pool.map(lambda _: batch(http, shared, "TEST:shared").json(), range(16)))
    assert sum(r["created"] for r in results) == 16 * 1500
    assert all(r["rejected"] == [] for r in results + same)
    assert sum(r["created"] for r in same) == 1500  # each shared item created exactly once
    assert sum(r["unchanged"] for r in same) == 15 * 1500
    stats = http.get("/api/v1/stats").json()["data_sources"]
    assert (stats["TEST:concurrent"], stats["TEST:shared"]) == (16 * 1500, 1500)
    ids = [f"CONC-{i:07d}" for i in range(0, 16 * 1500, 97)]
    assert len(http.post("/api/v1/items/lookup", json={"item_ids": ids}).json()["items"]) == \
        len(ids)
    assert http.get("/api/v1/items/SHARED-0000007").json()["version"] == 1


@pytest.mark.parametrize(("content_hash", "expected"), [
    ("sha256:ab/c+=", '"sha256:ab/c+="'), ('q"uote', '"q%22uote"'),
    ("emoji-\U0001f936", '"emoji-%F0%9F%A4%B6"'), ("é\x01%", '"%C3%A9%01%25"'),
])
def test_etag_of_any_opaque_hash(http: httpx.Client, content_hash: str, expected: str) -> None:
    """Regression (found by fuzzing): a hash that is not Latin-1 made GET/HEAD answer 500."""
    item = {**ITEM, "item_id": "ETAG-1", "content_hash": content_hash}
    assert single(http, item).status_code in (200, 201)
    got = http.get("/api/v1/items/ETAG-1")
    assert got.json()["content_hash"] == content_hash and got.headers["etag"] == expected
    assert http.head("/api/v1/items/ETAG-1").headers["etag"] == expected


def test_unknown_endpoints_and_methods_say_what_was_asked(http: httpx.Client) -> None:
    assert "no endpoint GET '/api/v1/nope'" in error_of(http.get("/api/v1/nope"), 404)["reason"]
    assert error_of(http.delete("/api/v1/items/X"), 405)["reason"] == \
        "method not allowed: DELETE '/api/v1/items/X'"
