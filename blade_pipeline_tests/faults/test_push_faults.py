"""Cases 16a-16b: push ingestion keeps every acknowledged record across a kill -9 of the ingest
server mid-stream, and of NATS itself (a private server on its own store, restarted on it).

A client thread pushes numbered batches, retrying a batch with the same Idempotency-Key until
it is acknowledged (as a real client would after a dropped connection or a 503); the process is
killed while batches are in flight and restarted. Afterwards the drain has written every record
of every acknowledged batch into the lake exactly once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pyarrow.dataset as pads
import pytest

from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.push.auth import mint_token
from blade_pipeline.push.drain import pushed_dir
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.integration.test_ingest_server import SECRET
from blade_pipeline_tests.nats_support import NATS_URL, nats_answers

pytestmark = [pytest.mark.slow, pytest.mark.extended,
              pytest.mark.skipif(not nats_answers(), reason="NATS does not answer on 4222")]
SOURCES = """
sources:
  - name: sortie_events
    display_name: Sortie events
    data_type: sortie
    kind: push
    push: {columns: {event_id: string, batch: int, last_modified: timestamp}}
    primary_key: event_id
    item_id_prefix: SEV
    partition_start: "2026-01-01"
"""
BATCHES, RECORDS = 40, 500


class Client(threading.Thread):
    """Pushes BATCHES batches in order, each retried with its key until acknowledged."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.acked: dict[int, dict] = {}
        self.retries = 0

    def run(self) -> None:
        deadline = time.monotonic() + 240
        for n in range(BATCHES):
            body = "".join(json.dumps({"event_id": f"E{n:03d}-{i:04d}", "batch": n,
                                       "last_modified": f"2026-12-0{1 + n % 3}T10:00:00Z"})
                           + "\n" for i in range(RECORDS)).encode()
            while time.monotonic() < deadline:
                try:
                    answer = httpx.post(f"{self.url}/v1/ingest/sortie_events", content=body,
                                        timeout=10, headers={
                                            "Authorization": f"Bearer {self.token}",
                                            "Idempotency-Key": f"batch-{n}",
                                            "Content-Type": "application/x-ndjson"})
                    if answer.status_code == 200:
                        self.acked[n] = answer.json()
                        break
                except httpx.TransportError:
                    pass
                self.retries += 1
                time.sleep(0.2)
            time.sleep(0.02)


def _server(home: Path, port: int, nats_url: str, stream: str) -> ServerProcess:
    server = ServerProcess(blade_command("ingest-server", "--port", str(port)), port,
                           home / "server.log")
    server.start("/healthz", env={"BLADE_SOURCES_FILE": str(home / "sources.yaml"),
                                  "BLADE_INGEST_STREAM": stream, "BLADE_NATS_URL": nats_url,
                                  "BLADE_INGEST_JWT_SECRET": SECRET,
                                  "BLADE_LAKE_URI": str(home / "lake")})
    return server


def _assert_lake_holds_every_acknowledged_record_once(home: Path, client: Client) -> None:
    assert sorted(client.acked) == list(range(BATCHES)), "the client gave up on a batch"
    lake = ParquetLake(uri=str(home / "lake"))
    expected = BATCHES * RECORDS
    deadline = time.monotonic() + 60
    while True:
        directory = pushed_dir(lake, "sortie_events")
        rows = (pads.dataset(directory, format="parquet", partitioning="hive").to_table()
                if Path(directory).exists() else None)
        if rows is not None and rows.num_rows >= expected:
            break
        assert time.monotonic() < deadline, "the drain did not catch up"
        time.sleep(0.5)
    ids = rows.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == expected


def _start_nats(port: int, store: Path) -> subprocess.Popen:
    process = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js",
                                "-sd", str(store)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}", timeout=0.5)
        except httpx.RemoteProtocolError:
            return process  # the port answers (NATS' protocol, not HTTP)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the private NATS did not start"
            time.sleep(0.1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "sources.yaml").write_text(SOURCES)
    return tmp_path


def test_16a_the_ingest_server_killed_mid_stream_loses_no_acknowledged_record(home):
    stream, port = f"BLADE_F16A_{int(time.time() * 1000)}", free_port()
    server = _server(home, port, NATS_URL, stream)
    client = Client(server.base_url, mint_token(SECRET, "acme", "*", "blade-ingest"))
    try:
        client.start()
        while len(client.acked) < 10:
            time.sleep(0.05)
        server.kill()  # kill -9 with batches in flight
        time.sleep(0.5)
        server = _server(home, port, NATS_URL, stream)
        client.join(240)
        _assert_lake_holds_every_acknowledged_record_once(home, client)
        assert client.retries > 0
    finally:
        server.stop()
        from blade_pipeline_tests.integration.test_ingest_server import _stream_op
        from blade_pipeline_tests.nats_support import run_async

        run_async(_stream_op(stream, "delete"))


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="no nats-server binary")
def test_16b_nats_killed_mid_stream_and_restarted_on_its_store_loses_nothing(home):
    nats_port, port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    nats = _start_nats(nats_port, home / "nats-store")
    server = _server(home, port, nats_url, "BLADE_F16B")
    client = Client(server.base_url, mint_token(SECRET, "acme", "*", "blade-ingest"))
    try:
        client.start()
        while len(client.acked) < 10:
            time.sleep(0.05)
        nats.kill()  # kill -9 of the log with batches in flight: the API answers 503 meanwhile
        nats.wait()
        time.sleep(1.0)
        nats = _start_nats(nats_port, home / "nats-store")
        client.join(240)
        _assert_lake_holds_every_acknowledged_record_once(home, client)
        assert client.retries > 0
    finally:
        server.stop()
        nats.kill()
        nats.wait()
