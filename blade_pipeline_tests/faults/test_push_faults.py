"""Cases 16a-16c: push ingestion keeps every acknowledged record across a kill -9 of the ingest
server mid-stream, of NATS itself (a private server on its own store, restarted on it), and of
the drain between its day files and its ack.

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

import dagster as dg
import httpx
import pyarrow.dataset as pads
import pytest

from blade_pipeline.config.sources import load_sources
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.push.auth import mint_token
from blade_pipeline.push.client import PushClient, ndjson_body
from blade_pipeline.push.drain import pushed_dir
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN
from blade_pipeline_tests.expectations import catalog_items
from blade_pipeline_tests.integration.test_ingest_server import SECRET, _stream_op
from blade_pipeline_tests.nats_support import NATS_URL, nats_answers, run_async

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


def _server(home: Path, port: int, nats_url: str, stream: str,
            ack_wait_seconds: float = 5, drain: bool = True) -> ServerProcess:
    server = ServerProcess(blade_command("ingest-server", "--port", str(port),
                                         *([] if drain else ["--no-drain"])), port,
                           home / "server.log")
    server.start("/healthz", env={"BLADE_SOURCES_FILE": str(home / "sources.yaml"),
                                  "BLADE_INGEST_STREAM": stream, "BLADE_NATS_URL": nats_url,
                                  "BLADE_INGEST_JWT_SECRET": SECRET,
                                  "BLADE_INGEST_DRAIN_ACK_WAIT_SECONDS": str(ack_wait_seconds),
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


def _syncs_every_write() -> bool:
    """nats-server >= 2.10 has ``sync_interval: always`` (an fsync before every ack)."""
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip().rsplit("v", 1)[-1]
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (2, 10)


def _start_nats(port: int, store: Path) -> subprocess.Popen:
    """A private JetStream server on ``store``, syncing every write where it can."""
    args = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    if _syncs_every_write():
        config = store.parent / "nats.conf"
        config.write_text(f'jetstream {{ store_dir: "{store}", sync_interval: always }}\n')
        args = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-c", str(config)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_16c_the_drain_killed_between_its_day_files_and_the_ack_doubles_nothing(
        tmp_path, start_catalog):
    """40 batches wait in the log (a server without its drain took them); a server with its
    drain starts and is killed -9 as soon as its first day file appears, while it writes the
    others and before it commits and acks. Restarted, it gets the same batches again after
    the ack wait, rewrites the same files and commits; more batches follow. Every
    acknowledged record reaches the lake and then the catalog exactly once."""
    from blade_pipeline.sources.pushed_rows import PushedRows
    from blade_pipeline_tests.integration import test_push_end_to_end as e2e

    (tmp_path / "sources.yaml").write_text(e2e.SOURCES)
    [source] = load_sources(tmp_path / "sources.yaml")
    token = mint_token(SECRET, "acme", ["sortie_events"], "blade-ingest")

    def push(server: ServerProcess, batches: range) -> list[int]:
        with PushClient(server.base_url, token) as client:
            return [client.send_ndjson("sortie_events", ndjson_body(e2e._records(
                        RECORDS * n, RECORDS, e2e.DAYS[n % 3])), f"batch-{n}").sequence
                    for n in batches]

    # The kill must land after the first day file and before the commit: a fast drain can
    # finish first, and then the case is tried again on a fresh stream and lake (at most 3).
    for attempt in range(3):
        home = tmp_path / f"attempt-{attempt}"
        home.mkdir()
        shutil.copy(tmp_path / "sources.yaml", home / "sources.yaml")
        stream, port = f"BLADE_F16C_{int(time.time() * 1000)}", free_port()
        lake = ParquetLake(uri=str(home / "lake"))
        folder = Path(pushed_dir(lake, "sortie_events"))
        server = _server(home, port, NATS_URL, stream, drain=False)
        try:
            acked = push(server, range(40))
            server.stop()
            # (the drain's consumer is made here: its ack wait outlasts the restart and the 10
            # newer batches, so the 40 come again after those, as after a real crash)
            server = _server(home, port, NATS_URL, stream, ack_wait_seconds=8)
            deadline = time.monotonic() + 60
            while not any(folder.glob("date=*/[0-9]*.parquet")):
                assert time.monotonic() < deadline, "the drain wrote no day file"
                time.sleep(0.002)
            server.kill()
            # (a temporary file the kill cut short stays: hidden names are not rows)
            written = {int(p.stem) for p in folder.glob("date=*/[0-9]*.parquet")}
            committed = PushedRows(lake=lake).committed("sortie_events").sequence
            in_window = bool(written) and max(written) > committed
            if in_window:
                server = _server(home, port, NATS_URL, stream)
                acked += push(server, range(40, 50))
                # the 40 come again after the ack wait, behind the 10 newer ones: lag 0 once
                # acked
                lag = 'blade_ingest_drain_lag_batches{source="sortie_events"} 0.0'
                while (PushedRows(lake=lake).committed("sortie_events").sequence < max(acked)
                       or lag not in httpx.get(f"{server.base_url}/metrics").text):
                    assert time.monotonic() < deadline + 60, "the drain did not commit every batch"
                    time.sleep(0.2)
        finally:
            server.stop()
            run_async(_stream_op(stream, "delete"))
        if in_window:
            break
    else:
        raise AssertionError("three kills landed outside the files-to-ack window")
    rows = pads.dataset(folder, format="parquet", partitioning="hive").to_table()
    ids = rows.column("sortie_id").to_pylist()
    assert len(ids) == len(set(ids)) == 50 * RECORDS
    catalog = start_catalog()
    client = CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN)
    tags = {"dagster/asset_partition_range_start": e2e.DAYS[0],
            "dagster/asset_partition_range_end": e2e.DAYS[-1]}
    run = dg.materialize(build_blade_assets(source), instance=dg.DagsterInstance.ephemeral(),
                         resources={"pushed": PushedRows(lake=lake), "lake": lake,
                                    "catalog": client}, tags=tags)
    assert run.success
    items = catalog_items(client, source.catalog_data_source)
    assert len(items) == len({i["item_id"] for i in items}) == 50 * RECORDS
