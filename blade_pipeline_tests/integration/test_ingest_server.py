"""`blade ingest-server` against the machine's NATS JetStream (127.0.0.1:4222), driven over
HTTP with httpx: authenticated batches acknowledged only once the log stored them, retries
stored once, refusals that store nothing, metrics, and no token in the server's log."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.push.auth import mint_token
from blade_pipeline.push.records import from_log_payload
from blade_pipeline_tests.nats_support import NATS_URL, nats_answers, run_async

SECRET = "integration-test-ingest-secret-32-bytes+"
AUD = "blade-ingest"
SOURCES = """
sources:
  - name: sortie_events
    display_name: Sortie events
    data_type: sortie
    kind: push
    push:
      columns: {event_id: string, tail_number: string, flight_hours: "decimal(6,2)",
                last_modified: timestamp}
    primary_key: event_id
    item_id_prefix: SEV
    partition_start: "2026-01-01"
  - name: supply_counts
    display_name: Supply counts
    data_type: supply
    kind: push
    push: {columns: {part_number: string, quantity: int, last_modified: timestamp}}
    primary_key: part_number
    item_id_prefix: SCN
    partition_start: "2026-01-01"
"""


pytestmark = pytest.mark.skipif(not nats_answers(),
                                reason="NATS does not answer on 127.0.0.1:4222 (CI starts it)")


async def _stream_op(stream: str, op: str, seq: int | None = None):
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        if op == "delete":
            await js.delete_stream(stream)
            return None
        if op == "info":
            return (await js.stream_info(stream)).state.messages
        return await js.get_msg(stream, seq)
    finally:
        await nc.close()


FLOOD_LIMIT = 16  # the module's server: connections + requests at once


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[ServerProcess, str]]:
    home = tmp_path_factory.mktemp("ingest")
    (home / "sources.yaml").write_text(SOURCES)
    stream = f"BLADE_TEST_{uuid.uuid4().hex[:10].upper()}"
    port, flight_port = free_port(), free_port()
    proc = ServerProcess(blade_command("ingest-server", "--port", str(port), "--no-drain",
                                       "--flight-port", str(flight_port)), port,
                         home / "server.log")
    proc.flight_port = flight_port
    proc.start("/healthz", env={"BLADE_SOURCES_FILE": str(home / "sources.yaml"),
                                "BLADE_INGEST_STREAM": stream, "BLADE_NATS_URL": NATS_URL,
                                "BLADE_INGEST_JWT_SECRET": SECRET,
                                "BLADE_INGEST_MAX_BODY_BYTES": str(256 * 1024),
                                "BLADE_INGEST_MAX_CONCURRENT_REQUESTS": str(FLOOD_LIMIT)})
    try:
        yield proc, stream
    finally:
        proc.stop()
        run_async(_stream_op(stream, "delete"))


def _token(tenant: str = "acme", endpoints: list[str] | str = "*", **kw) -> str:
    return mint_token(kw.get("secret", SECRET), tenant, endpoints, AUD,
                      kw.get("ttl", dt.timedelta(minutes=10)))


def _post(proc: ServerProcess, source: str, body: bytes, token: str | None = None,
          key: str | None = "batch-1", content_type: str = "application/x-ndjson"
          ) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{proc.base_url}/v1/ingest/{source}", content=body, headers=headers,
                      timeout=30)


def _ndjson(n: int, start: int = 0) -> bytes:
    return "".join(json.dumps({"event_id": f"E{i}", "tail_number": f"AF-{i % 7}",
                               "flight_hours": f"{i % 9}.25",
                               "last_modified": f"2026-12-0{1 + i % 3}T10:00:00Z"}) + "\n"
                   for i in range(start, start + n)).encode()


def test_a_batch_is_acknowledged_once_stored_and_a_retry_is_not_stored_twice(server):
    proc, stream = server
    token = _token()
    key = f"b-{uuid.uuid4().hex}"
    first = _post(proc, "sortie_events", _ndjson(1000), token, key)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["records"] == 1000 and answer["duplicate"] is False
    again = _post(proc, "sortie_events", _ndjson(1000), token, key)
    assert again.json() == {"records": 1000, "sequence": answer["sequence"], "duplicate": True}
    stored = run_async(_stream_op(stream, "get", answer["sequence"]))
    assert stored.headers["Blade-Tenant"] == "acme" and stored.headers["Blade-Records"] == "1000"
    assert stored.subject == f"{stream}.acme.sortie_events"
    table = from_log_payload(stored.data)
    assert table.num_rows == 1000 and table.column("event_id")[999].as_py() == "E999"
    assert table.schema.field("last_modified").type == pa.timestamp("us", tz="UTC")


def test_an_arrow_batch_is_stored_like_an_ndjson_one(server):
    proc, stream = server
    sent = pa.table({"part_number": ["P1", "P2"], "quantity": [3, 4],
                     "last_modified": pa.array([dt.datetime(2026, 12, 1)] * 2,
                                               pa.timestamp("us", tz="UTC"))})
    sink = io.BytesIO()
    with ipc.new_stream(sink, sent.schema) as writer:
        writer.write_table(sent)
    answer = _post(proc, "supply_counts", sink.getvalue(), _token(endpoints=["supply_counts"]),
                   f"b-{uuid.uuid4().hex}", "application/vnd.apache.arrow.stream")
    assert answer.status_code == 200, answer.text
    stored = run_async(_stream_op(stream, "get", answer.json()["sequence"]))
    assert from_log_payload(stored.data).equals(sent)


@pytest.mark.parametrize(("case", "status", "says"), [
    ("no token", 401, "missing bearer token"),
    ("forged", 401, "InvalidSignatureError"),
    ("expired", 401, "expired"),
    ("other tenant's source", 403, "may not write to 'sortie_events'"),
    ("unknown source", 404, "no push source 'nowhere'"),
    ("no batch id", 400, "Idempotency-Key"),
    ("bad record", 400, "line 2: field 'flight_hours'"),
    ("unknown field", 400, "field 'pilot' is not a column"),
    ("no watermark", 400, "record 2: field 'last_modified' is missing"),
    ("not arrow", 400, "not an Arrow IPC stream"),
    ("content type", 415, "Content-Type"),
    ("too large", 413, "over the limit"),
])
def test_a_refused_batch_says_why_and_stores_nothing(server, case, status, says):
    proc, stream = server
    before = run_async(_stream_op(stream, "info"))
    body, token, source = _ndjson(3), _token(), "sortie_events"
    kwargs: dict = {}
    if case == "no token":
        token = None
    elif case == "forged":
        token = _token(secret="someone-elses-secret-of-32-bytes-or-more")
    elif case == "expired":
        token = _token(ttl=dt.timedelta(seconds=-1))
    elif case == "other tenant's source":
        token = _token("globex", ["supply_counts"])
    elif case == "unknown source":
        source = "nowhere"
    elif case == "no batch id":
        kwargs["key"] = None
    elif case == "bad record":
        body = _ndjson(1) + b'{"event_id": "X", "flight_hours": "lots"}\n' + _ndjson(1)
    elif case == "no watermark":
        body = _ndjson(1) + b'{"event_id": "X"}\n'
    elif case == "unknown field":
        body = b'{"event_id": "X", "pilot": "Maverick"}\n'
    elif case == "not arrow":
        kwargs["content_type"] = "application/vnd.apache.arrow.stream"
    elif case == "content type":
        kwargs["content_type"] = "text/csv"
    elif case == "too large":
        body = _ndjson(3000)
    answer = _post(proc, source, body, token, **kwargs)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert run_async(_stream_op(stream, "info")) == before


def test_metrics_count_acknowledged_records_and_refusals_and_the_log_holds_no_token(server):
    proc, _ = server
    token = _token("initech", ["sortie_events"])
    assert _post(proc, "sortie_events", _ndjson(5), token, f"b-{uuid.uuid4().hex}"
                 ).status_code == 200
    assert _post(proc, "sortie_events", b"{", token, f"b-{uuid.uuid4().hex}").status_code == 400
    text = httpx.get(f"{proc.base_url}/metrics").text
    assert 'blade_ingest_records_total{source="sortie_events",tenant="initech"} 5.0' in text
    assert 'blade_ingest_refused_batches_total{reason="bad_records"}' in text
    assert "blade_ingest_ack_latency_seconds_bucket" in text
    assert httpx.get(f"{proc.base_url}/healthz").json()["status"] == "ok"
    log = Path(proc.log_path).read_text()
    assert token not in log and SECRET not in log


def _drain_pass(stream: str, lake_dir: Path, crash_after_files: bool = False):
    """Drain sortie_events until nothing is pending (a fresh connection: a restarted drain);
    ``crash_after_files``: write the day files of what is pending, then die unacked."""
    from blade_pipeline.config.sources import load_sources
    from blade_pipeline.push.drain import Drain, Drained, write_batch
    from blade_pipeline.storage.lake import ParquetLake

    sources = load_sources_text(SOURCES, load_sources)
    source = next(s for s in sources if s.name == "sortie_events")
    lake = ParquetLake(uri=str(lake_dir))

    async def run() -> Drained:
        drain = Drain(NATS_URL, stream, lake, sources, ack_wait_seconds=2.0)
        await drain.connect()
        total = Drained()
        try:
            if crash_after_files:
                for message in await drain._subs[source.name].fetch(64, timeout=2):
                    write_batch(lake, source, message.metadata.sequence.stream,
                                message.headers["Blade-Tenant"],
                                from_log_payload(message.data))
                return total
            for _ in range(20):  # redelivery of a dead drain's batches comes after ack_wait
                result = await drain.drain_once(source, wait_seconds=1.0)
                total.batches += result.batches
                total.records += result.records
                total.days |= result.days
                total.committed = result.committed
                if not await drain.pending(source):
                    return total
            raise AssertionError("the drain left batches pending")
        finally:
            await drain.close()

    return run_async(run()), lake


def load_sources_text(text: str, load_sources) -> list:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sources.yaml"
        path.write_text(text)
        return list(load_sources(path))


async def _logged_records(stream: str, source: str) -> int:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        total = 0
        for seq in range(1, last + 1):
            message = await js.get_msg(stream, seq)
            if message.subject.endswith(f".{source}"):
                total += int(message.headers["Blade-Records"])
        return total
    finally:
        await nc.close()


def test_the_drain_moves_each_batch_into_its_days_exactly_once_across_a_crash(server, tmp_path):
    import pyarrow.dataset as pads

    from blade_pipeline.push.drain import committed_sequence, pushed_dir

    proc, stream = server
    token = _token("acme", ["sortie_events"])
    for i in range(3):
        assert _post(proc, "sortie_events", _ndjson(300, 300 * i), token,
                     f"drain-{uuid.uuid4().hex}").status_code == 200
    _drain_pass(stream, tmp_path / "lake", crash_after_files=True)
    result, lake = _drain_pass(stream, tmp_path / "lake")
    assert {"2026-12-01", "2026-12-02", "2026-12-03"} <= result.days
    rows = pads.dataset(pushed_dir(lake, "sortie_events"), format="parquet",
                        partitioning="hive").to_table()
    assert rows.num_rows == run_async(_logged_records(stream, "sortie_events"))
    assert "acme" in set(rows.column("_tenant").to_pylist())
    committed = committed_sequence(lake, "sortie_events")
    assert committed == result.committed > 0
    again, _ = _drain_pass(stream, tmp_path / "lake")
    assert again.batches == 0 and again.committed == committed


def test_a_websocket_client_streams_batches_and_gets_an_ack_each(server):
    from websockets.sync.client import connect

    proc, stream = server
    url = proc.base_url.replace("http://", "ws://") + "/v1/ws/sortie_events"
    with connect(url, additional_headers={"Authorization": f"Bearer {_token()}"}) as ws:
        key = f"ws-{uuid.uuid4().hex}"
        records = [json.loads(line) for line in _ndjson(50).decode().splitlines()]
        ws.send(json.dumps({"batch_id": key, "records": records}))
        first = json.loads(ws.recv())
        assert first["records"] == 50 and first["duplicate"] is False
        ws.send(json.dumps({"batch_id": key, "records": records}))
        assert json.loads(ws.recv())["duplicate"] is True
        ws.send(json.dumps({"batch_id": "bad-1", "records": [{"event_id": "X", "legs": 1}]}))
        refused = json.loads(ws.recv())
        assert refused["status"] == 400 and "field 'legs' is not a column" in refused["error"]
    stored = run_async(_stream_op(stream, "get", first["sequence"]))
    assert from_log_payload(stored.data).num_rows == 50
    with pytest.raises(Exception, match="HTTP 403"), connect(
            url, additional_headers={"Authorization": f"Bearer {_token('x', ['other'])}"}) as ws:
        ws.recv()


def test_a_flight_client_puts_record_batches_with_an_ack_each(server):
    import pyarrow.flight as fl

    proc, stream = server
    client = fl.connect(f"grpc+tcp://127.0.0.1:{proc.flight_port}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {_token()}".encode())])
    table = pa.table({"event_id": [f"F{i}" for i in range(10_000)],
                      "last_modified": pa.array([dt.datetime(2026, 12, 1)] * 10_000,
                                                pa.timestamp("us", tz="UTC"))})
    writer, acks = client.do_put(fl.FlightDescriptor.for_path("sortie_events"), table.schema,
                                 options=options)
    answers = []
    for key in (f"fl-{uuid.uuid4().hex}", f"fl-{uuid.uuid4().hex}"):
        writer.write_with_metadata(table.to_batches()[0], pa.py_buffer(key.encode()))
        answers.append(json.loads(acks.read().to_pybytes()))
    writer.done_writing()
    writer.close()
    assert [a["records"] for a in answers] == [10_000, 10_000]
    assert not any(a["duplicate"] for a in answers)
    stored = run_async(_stream_op(stream, "get", answers[0]["sequence"]))
    assert from_log_payload(stored.data).column("event_id")[9_999].as_py() == "F9999"
    denied = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer forged")])
    with pytest.raises(fl.FlightUnauthenticatedError):
        writer, _ = client.do_put(fl.FlightDescriptor.for_path("sortie_events"), table.schema,
                                  options=denied)
        writer.write_with_metadata(table.to_batches()[0], pa.py_buffer(b"x"))
        writer.close()


def test_a_flight_call_refuses_each_bad_batch_by_name_and_goes_on(server):
    """Over Flight, a batch with an undeclared column, a value that does not fit its type or
    no batch id is answered by an error ack naming it and stores nothing; the call goes on,
    and bytes that are not gRPC at all leave the endpoint serving."""
    import socket

    import pyarrow.flight as fl

    proc, stream = server
    before = run_async(_stream_op(stream, "info"))
    client = fl.connect(f"grpc+tcp://127.0.0.1:{proc.flight_port}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {_token()}".encode())])
    stamp = pa.array([dt.datetime(2026, 12, 1)], pa.timestamp("us", tz="UTC"))

    def put(table: pa.Table, keys: list[bytes | None]) -> list[dict]:
        writer, acks = client.do_put(fl.FlightDescriptor.for_path("sortie_events"),
                                     table.schema, options=options)
        answers = []
        for key in keys:
            batch = table.to_batches()[0]
            if key is None:
                writer.write_batch(batch)
            else:
                writer.write_with_metadata(batch, pa.py_buffer(key))
            answers.append(json.loads(acks.read().to_pybytes()))
        writer.close()
        return answers

    [extra] = put(pa.table({"event_id": ["X1"], "legs": [2], "last_modified": stamp}),
                  [b"fx-1"])
    [not_a_time] = put(pa.table({"event_id": ["X2"], "last_modified": ["yesterday"]}),
                       [b"fx-2"])
    no_id, good = put(pa.table({"event_id": ["X3"], "last_modified": stamp}),
                      [None, b"fx-" + uuid.uuid4().hex.encode()])
    assert extra["status"] == 400 and "field 'legs' is not a column" in extra["error"]
    assert not_a_time["status"] == 400 and "field 'last_modified'" in not_a_time["error"]
    assert no_id["status"] == 400 and "Idempotency-Key" in no_id["error"]
    assert good["records"] == 1  # after the batch without an id, on the same call
    assert run_async(_stream_op(stream, "info")) == before + 1
    with socket.create_connection(("127.0.0.1", proc.flight_port)) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 64)
    assert put(pa.table({"event_id": ["X4"], "last_modified": stamp}),
               [b"fx-" + uuid.uuid4().hex.encode()])[0]["records"] == 1


def test_a_flood_of_small_requests_is_bounded_and_every_batch_stored_once(server):
    """64 clients each push 15 one-record batches at once against a server serving 16 at a
    time: the excess is answered 503 at once, the clients retry with their keys, and every
    batch is stored once; the server answers its health check afterwards."""
    from blade_pipeline.push.client import PushClient

    proc, stream = server
    before = run_async(_stream_op(stream, "info"))
    run = uuid.uuid4().hex[:8]

    def client(n: int) -> list:
        with PushClient(proc.base_url, _token(), retry_pause=0.05) as push:
            return [push.send_ndjson("sortie_events", _ndjson(1, 100 * n + i),
                                     f"flood-{run}-{n}-{i}") for i in range(15)]

    with ThreadPoolExecutor(64) as pool:
        acks = [a for share in pool.map(client, range(64)) for a in share]
    assert len(acks) == 960 and not any(a.duplicate for a in acks)
    assert len({a.sequence for a in acks}) == 960
    assert any(a.attempts > 1 for a in acks), "the bound never answered 503"
    assert run_async(_stream_op(stream, "info")) == before + 960
    assert httpx.get(f"{proc.base_url}/healthz", timeout=10).status_code == 200
