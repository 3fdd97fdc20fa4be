"""Hostile input to the catalog service (case 12): path traversal and control
characters in item ids, a ~100 MB NDJSON line, non-UTF-8 bytes, deeply nested JSON.
Each gets a 4xx with a JSON reason, applies nothing, and the service stays up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest

from blade_pipeline_tests.integration.catalog_fixtures import (
    CATALOG_TOKEN,
    catalog_service,
    client_for,
)
from blade_pipeline_tests.multipart import encode_multipart
from blade_pipeline_tests.servers import ServerProcess

AUTH = {"Authorization": f"Bearer {CATALOG_TOKEN}"}
SOURCE = "BLADE:maintenance"
DEPTH = 100_000
LINE_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with catalog_service(tmp_path_factory.mktemp("hostile")) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def stays_up(server: ServerProcess) -> Iterator[None]:
    """After every test: /healthz answers and the service logged no unhandled error."""
    yield
    assert httpx.get(server.base_url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert "Traceback" not in server.log_text()


def reason_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error", "reason", "field"} and body["reason"], body
    return body["reason"]


def single(http: httpx.Client, raw: bytes, **form: str) -> httpx.Response:
    body, ctype = encode_multipart({"dataSource": SOURCE, **form},
                                   ("blade_item.json", raw, "application/json"))
    return http.post("/api/v1/items", content=body, headers={"Content-Type": ctype})


def batch(http: httpx.Client, ndjson: bytes) -> httpx.Response:
    body, ctype = encode_multipart({"dataSource": SOURCE},
                                   ("items.ndjson", ndjson, "application/x-ndjson"))
    return http.post("/api/v1/items/batch", content=body, headers={"Content-Type": ctype})


def raw_request(server: ServerProcess, method: str, target: str) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a request whose ``target`` is sent verbatim (httpx would
    normalise '..' segments away)."""
    conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, target, headers=AUTH)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("target", "words"), [
    ("/api/v1/items/../../etc/passwd", "no endpoint"),
    ("/api/v1/items/..%2f..%2fetc%2fpasswd", "cannot contain '/'"),
    ("/api/v1/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "cannot contain '/'"),
    ("/api/v1/items/%2e%2e", "no item '..'"),
    ("/api/v1/items/%00", r"no item '\x00'"),
    ("/api/v1/items/%0a", r"no item '\n'"),
    ("/api/v1/items/A%0d%0aX-Injected:%201", r"'A\r\nX-Injected: 1'"),
    ("/api/v1/items/%ff%fe", "no item"),
])
def test_traversal_and_control_characters_in_item_urls(server: ServerProcess, target: str,
                                                      words: str) -> None:
    status, headers, content = raw_request(server, "GET", target)
    assert (status, headers["content-type"]) == (404, "application/json")
    assert words in json.loads(content)["reason"]
    assert b"root:" not in content and "X-Injected" not in headers
    assert raw_request(server, "HEAD", target)[0] == 404


@pytest.mark.parametrize("item_id", ["../../etc/passwd", "a/b", "\x00", "A\x00B", "\n", "A\r\nB",
                                     "\x7f", ".", ".."])
def test_hostile_item_ids_are_refused_on_upload(http: httpx.Client, item_id: str) -> None:
    doc = json.dumps({"item_id": item_id, "data": {"v": 1}}).encode()
    assert "item_id" in reason_of(single(http, doc), 422)
    result = batch(http, doc + b"\n").json()
    assert result["created"] == 0 and len(result["rejected"]) == 1
    assert result["rejected"][0]["reason"].startswith("item_id:")
    assert item_id not in http.post("/api/v1/items/lookup",
                                    json={"item_ids": [item_id]}).json()["items"]


def test_percent_and_dots_in_ids_round_trip_through_the_client(server: ServerProcess) -> None:
    """Ids that look like encoded traversal are just text: stored and read back as such."""
    with client_for(server) as client:
        for item_id in ("%2e%2e%2f", "..%2f..", "...", "a..b", "%00"):
            created = client.upload_item({"item_id": item_id, "data_type": "maintenance",
                                          "data": {"id": item_id}})
            assert created["item_id"] == item_id
            stored = client.get(item_id)
            assert stored is not None and stored["item"]["data"] == {"id": item_id}
            assert client.exists(item_id)


def _peak_rss_kib(server: ServerProcess) -> int:
    assert server.popen is not None
    status = Path(f"/proc/{server.popen.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def test_100_mb_ndjson_line_gets_413_before_its_body_is_read(server: ServerProcess) -> None:
    """The limit (64 MiB) is checked on Content-Length: the answer comes without one byte of
    the body sent, and a client that sends it all anyway gets the 413 too."""
    prefix, ctype = encode_multipart({"dataSource": SOURCE},
                                     ("items.ndjson", b"", "application/x-ndjson"))
    head, tail = prefix.split(b"\r\n\r\n\r\n", 1)  # the empty file part sits between them
    head += b"\r\n\r\n" + b'{"item_id":"HUGE-1","data":{"text":"'
    tail = b'"}}\r\n' + tail
    length = len(head) + LINE_BYTES + len(tail)
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        started = time.monotonic()
        conn.putrequest("POST", "/api/v1/items/batch")
        for name, value in {**AUTH, "Content-Type": ctype, "Content-Length": str(length)}.items():
            conn.putheader(name, value)
        conn.endheaders()  # and not one byte of the body
        response = conn.getresponse()
        assert response.status == 413
        assert "exceeds the limit" in json.loads(response.read())["reason"]
        assert time.monotonic() - started < 2
    finally:
        conn.close()

    before = _peak_rss_kib(server)

    def stream() -> Iterator[bytes]:
        yield head
        block = b"x" * (1024 * 1024)
        for _ in range(LINE_BYTES // len(block)):
            yield block
        yield tail

    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as http:
        declared = http.post("/api/v1/items/batch", content=stream(),
                             headers={"Content-Type": ctype, "Content-Length": str(length)})
        assert "exceeds the limit" in reason_of(declared, 413)
        chunked = http.post("/api/v1/items/batch", content=stream(),
                            headers={"Content-Type": ctype})
        assert "exceeds the limit" in reason_of(chunked, 413)
        assert http.head("/api/v1/items/HUGE-1").status_code == 404
    assert _peak_rss_kib(server) - before < 32 * 1024, "the service buffered the body"


@pytest.mark.parametrize(("case", "status", "words"), [
    ("single-file", 400, "not UTF-8"),
    ("batch-line", 200, "not valid UTF-8"),
    ("lookup", 400, "not UTF-8"),
    ("dataSource", 422, "dataSource"),
])
def test_non_utf8_bytes(http: httpx.Client, case: str, status: int, words: str) -> None:
    bad = b'{"item_id":"LATIN-\xe9","data":{"v":"\xff\xfe"}}'
    if case == "single-file":
        response = single(http, bad)
    elif case == "batch-line":
        response = batch(http, bad + b"\n")
    elif case == "lookup":
        response = http.post("/api/v1/items/lookup", content=b'{"item_ids":["\xff"]}',
                             headers={"Content-Type": "application/json"})
    else:
        body, ctype = encode_multipart({"dataSource": SOURCE}, (
            "i.json", b'{"item_id":"NU-1","data":{}}', "application/json"))
        response = http.post("/api/v1/items", content=body.replace(b"BLADE:", b"\xff\xfe:"),
                             headers={"Content-Type": ctype})
    if status == 200:
        assert response.status_code == 200
        assert words in response.json()["rejected"][0]["reason"]
    else:
        assert words in reason_of(response, status)
    assert http.head("/api/v1/items/NU-1").status_code == 404


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("case", ["single-file", "single-array", "batch-line", "metadata",
                                  "lookup"])
def test_deeply_nested_json(http: httpx.Client, case: str) -> None:
    started = time.monotonic()
    deep = _nested(DEPTH)
    item = f'{{"item_id":"DEEP-1","data":{deep}}}'.encode()
    if case == "single-file":
        response, status = single(http, item), 400
    elif case == "single-array":
        response, status = single(http, ("[" * DEPTH + "]" * DEPTH).encode()), 400
    elif case == "batch-line":
        response, status = batch(http, item + b"\n"), 200
    elif case == "metadata":
        response, status = single(http, b'{"item_id":"DEEP-1","data":{}}', metadata=deep), 400
    else:
        response = http.post("/api/v1/items/lookup", headers={"Content-Type": "application/json"},
                             content=f'{{"item_ids":{"[" * DEPTH}{"]" * DEPTH}}}'.encode())
        status = 400
    if status == 200:
        assert response.status_code == 200
        assert "nested" in response.json()["rejected"][0]["reason"]
    else:
        assert "nested" in reason_of(response, status)
    assert time.monotonic() - started < 10
    assert http.head("/api/v1/items/DEEP-1").status_code == 404
