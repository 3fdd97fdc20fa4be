"""`blade bench --source push`: the ingest API measured from clients in their own processes.

The bench starts two ``blade ingest-server`` processes on loopback, both on the machine's NATS
(``BLADE_NATS_URL``, default 127.0.0.1:4222) with streams of their own (deleted at the end):
one without its drain, for the acknowledgement figures, one with it, for the sustained ones.
Each stage is a client process (``bench/stages.py``) with its batches encoded before the clock
starts, ``PUSH_CLIENTS`` batches in flight (one per connection or Flight call):

    push_ceiling  the same batches as the log stores them (zstd Arrow IPC), published straight
                  to JetStream: what the log absorbs, no API in front (the ceiling)
    push_arrow    10,000-record Arrow IPC batches, POST /v1/ingest: acknowledged records/s
    push_flight   the same batches over Arrow Flight do_put
    push_ndjson   10,000-record NDJSON batches, POST /v1/ingest
    push_latency  1,000-record Arrow batches one at a time: ack latency p50 / p99
    push_lake     client -> drain -> Parquet days in the lake, committed (Flight, drain on)
    push_catalog  client -> lake -> staged (checks) -> catalog through Dagster ``materialize``
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
import pyarrow as pa

from blade_pipeline.bench.kinds import csv_columns
from blade_pipeline.config.sources import BladeSource, load_sources
from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.push.auth import mint_token
from blade_pipeline.push.client import PushClient, arrow_body
from blade_pipeline.push.records import ARROW_STREAM, NDJSON, to_log_payload
from blade_pipeline.sources.pushed_rows import PushedRows
from blade_pipeline.storage.lake import ParquetLake

PUSH_STAGES = ("push_ceiling", "push_arrow", "push_flight", "push_ndjson", "push_latency",
               "push_lake", "push_catalog")
PUSH_CLIENTS = 4  # batches in flight at once (connections / Flight calls)
BATCH_RECORDS, LATENCY_RECORDS, LATENCY_BATCHES = 10_000, 1_000, 1_000
SECRET = "blade-bench-ingest-secret-0123456789"
TENANT = "bench"
#: the targets of this 2-core machine (docs/performance.md)
TARGETS = {"push_arrow": 1_000_000, "push_ndjson": 150_000, "push_lake": 250_000}
P99_TARGET_MS = 20.0


def sources_yaml(data_type: str) -> str:
    """Two push sources of the bench's data type: one for the lake, one for the catalog."""
    columns = ", ".join(f'{name}: "{kind}"' for name, kind in csv_columns(data_type).items())
    entries = []
    for name, prefix in (("bench_push", "BENCH"), ("bench_push_catalog", "BENCHC")):
        entries.append(f"""  - name: {name}
    display_name: Bench pushes ({name})
    data_type: {name}
    model: {data_type}
    kind: push
    push: {{columns: {{{columns}}}}}
    primary_key: {_primary_key(data_type)}
    item_id_prefix: {prefix}
    partition_start: "2020-01-01"
""")
    return "sources:\n" + "".join(entries)


def _primary_key(data_type: str) -> str:
    from blade_pipeline.config.sources import source_for

    return source_for(data_type).primary_key


class PushServers:
    """The bench's two ingest servers (acks: no drain; sustained: drain into ``lake``)."""

    def __init__(self, workdir: Path, data_type: str) -> None:
        self.sources_file = workdir / "push-sources.yaml"
        self.sources_file.write_text(sources_yaml(data_type))
        self.lake = workdir / "push-lake"
        self.nats_url = os.environ.get("BLADE_NATS_URL", "nats://127.0.0.1:4222")
        tag = uuid.uuid4().hex[:8].upper()
        self.streams = {"acks": f"BLADE_BENCH_ACKS_{tag}", "drain": f"BLADE_BENCH_DRAIN_{tag}"}
        self.servers: dict[str, ServerProcess] = {}
        self.flight_ports: dict[str, int] = {}
        for role in ("acks", "drain"):
            port, flight = free_port(), free_port()
            server = ServerProcess(
                blade_command("ingest-server", "--port", str(port), "--flight-port",
                              str(flight), *(["--no-drain"] if role == "acks" else [])),
                port, workdir / f"ingest-{role}.log")
            server.start("/healthz", timeout=120, env={
                "BLADE_SOURCES_FILE": str(self.sources_file), "BLADE_NATS_URL": self.nats_url,
                "BLADE_INGEST_STREAM": self.streams[role], "BLADE_INGEST_JWT_SECRET": SECRET,
                "BLADE_LAKE_URI": str(self.lake)})
            if httpx.get(f"{server.base_url}/healthz", timeout=10).status_code != 200:
                server.stop()
                self.stop()
                raise RuntimeError(f"the bench's ingest server: NATS at {self.nats_url} does "
                                   f"not answer (see {server.log_path})")
            self.servers[role], self.flight_ports[role] = server, flight

    def cfg(self) -> dict:
        return {"push_sources_file": str(self.sources_file), "push_lake": str(self.lake),
                "nats_url": self.nats_url, "push_streams": self.streams,
                "push_token": mint_token(SECRET, TENANT, "*", "blade-ingest",
                                         dt.timedelta(hours=6)),
                "push_urls": {r: s.base_url for r, s in self.servers.items()},
                "push_flight_ports": self.flight_ports}

    def pids(self) -> dict[str, int]:
        pids = {f"ingest_{role}": s.popen.pid for role, s in self.servers.items()}
        nats_pid = _listener_pid(4222)
        return {**pids, **({"nats": nats_pid} if nats_pid else {})}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        asyncio.run(_delete_streams(self.nats_url, list(self.streams.values())))


def _listener_pid(port: int) -> int | None:
    """The process listening on ``port`` (the machine's NATS), for its CPU seconds."""
    import psutil

    try:
        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN":
                return conn.pid
    except psutil.AccessDenied:
        return None
    return None


async def _delete_streams(url: str, streams: list[str]) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        for stream in streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


# --- the client stages (each in its own process) ----------------------------------------------

def _source(cfg: dict, name: str) -> BladeSource:
    return next(s for s in load_sources(Path(cfg["push_sources_file"])) if s.name == name)


def _records(cfg: dict, source: BladeSource) -> pa.Table:
    """The bench's rows as the push source declares them (a bulk client sends the declared
    types; the server casts whatever it gets)."""
    from blade_pipeline.bench.stages import _local_rows

    con, sql = _local_rows(cfg)
    table = con.sql(sql).arrow()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    return table.cast(source.push.arrow_schema())


def _batches(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(offset, size) for offset in range(0, table.num_rows, size)]


def _parallel(work: list, send: Callable[[list], tuple[int, int]]) -> tuple[int, int]:
    """``work`` dealt to PUSH_CLIENTS senders, each returning the records acknowledged and
    the newest log sequence of its acks; their total and the newest of all."""
    shares = [share for i in range(PUSH_CLIENTS) if (share := work[i::PUSH_CLIENTS])]
    with ThreadPoolExecutor(len(shares)) as pool:
        done = list(pool.map(send, shares))
    return sum(r for r, _ in done), max(s for _, s in done)


def _http_stage(cfg: dict, content_type: str, encode: Callable[[pa.Table], bytes]
                ) -> Callable[[], int]:
    source = _source(cfg, "bench_push")
    bodies = [(f"{uuid.uuid4().hex}", encode(b))
              for b in _batches(_records(cfg, source), BATCH_RECORDS)]
    url, token = cfg["push_urls"]["acks"], cfg["push_token"]

    def send(share: list) -> tuple[int, int]:
        with PushClient(url, token, deadline_seconds=0) as client:  # (a refusal fails it)
            acks = [client.send(source.name, body, content_type, batch_id)
                    for batch_id, body in share]
        return (sum(0 if a.duplicate else a.records for a in acks),
                max(a.sequence for a in acks))

    return lambda: _parallel(bodies, send)[0]


def _ndjson(table: pa.Table) -> bytes:
    import polars as pl

    return pl.from_arrow(table).write_ndjson().encode()


def prepare_push_arrow(cfg: dict) -> Callable[[], int]:
    return _http_stage(cfg, ARROW_STREAM, arrow_body)


def prepare_push_ndjson(cfg: dict) -> Callable[[], int]:
    return _http_stage(cfg, NDJSON, _ndjson)


def _flight_send(port: int, token: str, source: str, share: list[pa.Table]
                 ) -> tuple[int, int]:
    """One do_put call streaming ``share``, one batch in flight; the records acknowledged
    and the newest log sequence."""
    import pyarrow.flight as fl  # (only the Flight stages pay for its import)

    client = fl.FlightClient(f"grpc+tcp://127.0.0.1:{port}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    acked = newest = 0
    writer, reader = client.do_put(fl.FlightDescriptor.for_path(source), share[0].schema,
                                   options)
    for table in share:
        for batch in table.to_batches():
            writer.write_with_metadata(batch, pa.py_buffer(uuid.uuid4().hex.encode()))
            answer = json.loads(reader.read().to_pybytes())
            if "error" in answer:
                raise RuntimeError(f"Flight batch refused: {answer}")
            acked += 0 if answer["duplicate"] else answer["records"]
            newest = max(newest, answer["sequence"])
    writer.done_writing()
    writer.close()
    client.close()
    return acked, newest


def _flight_stage(cfg: dict, role: str, source_name: str) -> Callable[[], tuple[int, int]]:
    """Pushes the bench's rows over Flight: (records acknowledged, newest log sequence)."""
    source = _source(cfg, source_name)
    batches = [b.combine_chunks() for b in _batches(_records(cfg, source), BATCH_RECORDS)]
    port, token = cfg["push_flight_ports"][role], cfg["push_token"]
    return lambda: _parallel(batches,
                             lambda share: _flight_send(port, token, source.name, share))


def prepare_push_flight(cfg: dict) -> Callable[[], int]:
    push = _flight_stage(cfg, "acks", "bench_push")
    return lambda: push()[0]


def prepare_push_latency(cfg: dict) -> Callable[[], tuple[int, dict]]:
    """1,000-record Arrow batches, one at a time; the time from sending to the answer."""
    source = _source(cfg, "bench_push")
    table = _records(cfg, source)
    bodies = [arrow_body(b) for b in _batches(table, LATENCY_RECORDS)][:LATENCY_BATCHES]
    url, token = cfg["push_urls"]["acks"], cfg["push_token"]

    def run() -> tuple[int, dict]:
        latencies = []
        with PushClient(url, token, deadline_seconds=0) as client:
            for body in bodies:
                started = time.perf_counter()
                client.send(source.name, body, ARROW_STREAM, uuid.uuid4().hex)
                latencies.append(1000 * (time.perf_counter() - started))
        cuts = statistics.quantiles(latencies, n=100)
        return len(bodies) * LATENCY_RECORDS, {"p50_ms": round(cuts[49], 2),
                                               "p99_ms": round(cuts[98], 2),
                                               "batches": len(bodies)}
    return run


def prepare_push_ceiling(cfg: dict) -> Callable[[], int]:
    """The batches as the log stores them, published straight to a stream of the log with
    PUSH_CLIENTS publishes in flight (no HTTP, no token, no parsing)."""
    source = _source(cfg, "bench_push")
    payloads = [(to_log_payload(b), b.num_rows)
                for b in _batches(_records(cfg, source), BATCH_RECORDS)]
    stream = cfg["push_streams"]["acks"]

    async def publish_all() -> int:
        nc = await nats.connect(cfg["nats_url"])
        js = nc.jetstream(timeout=30)
        queue = list(payloads)

        async def worker() -> int:
            stored = 0
            while queue:
                payload, records = queue.pop()
                await js.publish(f"{stream}.ceiling.{source.name}", payload, stream=stream,
                                 headers={"Nats-Msg-Id": uuid.uuid4().hex})
                stored += records
            return stored
        try:
            return sum(await asyncio.gather(*(worker() for _ in range(PUSH_CLIENTS))))
        finally:
            await nc.close()

    return lambda: asyncio.run(publish_all())


def _wait_committed(cfg: dict, source: str, sequence: int, deadline_s: float = 600) -> None:
    """Until the drain has committed ``source``'s batches up to log ``sequence`` (batches in
    log order: the bench kills nothing, so none comes again after a newer one)."""
    pushed = PushedRows(lake=ParquetLake(uri=cfg["push_lake"]))
    deadline = time.monotonic() + deadline_s
    while pushed.committed(source).sequence < sequence:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the drain did not commit {source}'s batches up to sequence "
                               f"{sequence} in {deadline_s:.0f}s")
        time.sleep(0.02)


def prepare_push_lake(cfg: dict) -> Callable[[], int]:
    """Client -> log -> drain -> Parquet in the lake, until the drain has committed all."""
    push = _flight_stage(cfg, "drain", "bench_push")

    def run() -> int:
        records, newest = push()
        _wait_committed(cfg, "bench_push", newest)
        return records
    return run


def prepare_push_catalog(cfg: dict) -> Callable[[], int]:
    """Client -> lake (as push_lake) -> the staged asset (checks) -> catalog through Dagster,
    the drained day as one partition."""
    import dagster as dg

    from blade_pipeline.bench.stages import _day, _fresh_sqlite_instance
    from blade_pipeline.defs.assets import build_blade_assets
    from blade_pipeline.storage.catalog import CatalogClient

    source = _source(cfg, "bench_push_catalog")
    root = Path(cfg["push_lake"])  # a repeat starts from no drained or staged day of it
    for path in [*(p for p in root.glob("*") if p.name != "pushed"),
                 root / "pushed" / source.name]:
        shutil.rmtree(path, ignore_errors=True)
    push = _flight_stage(cfg, "drain", source.name)
    lake = ParquetLake(uri=cfg["push_lake"])
    resources = {"pushed": PushedRows(lake=lake), "lake": lake,
                 "catalog": CatalogClient(base_url=cfg["catalog_url"],
                                          token=cfg["catalog_token"])}
    instance_dir = Path(cfg["workdir"]) / "dagster-push"

    def run() -> int:
        records, newest = push()
        _wait_committed(cfg, source.name, newest)
        result = dg.materialize(build_blade_assets(source, cfg["batch_rows"]),
                                partition_key=_day(cfg), resources=resources,
                                instance=_fresh_sqlite_instance(instance_dir))
        uploaded = [e.event_specific_data.materialization for e in result.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION"
                    and e.asset_key.path[-1] == "catalog"]
        if not result.success or not uploaded:
            raise RuntimeError("the pushed day did not reach the catalog")
        meta = uploaded[0].metadata
        if meta["created"].value + meta["rejected"].value != meta["items_total"].value:
            raise RuntimeError(f"catalog upload incomplete: {meta}")
        return records
    return run


STAGES: dict[str, Callable[[dict], Callable]] = {
    "push_ceiling": prepare_push_ceiling, "push_arrow": prepare_push_arrow,
    "push_flight": prepare_push_flight, "push_ndjson": prepare_push_ndjson,
    "push_latency": prepare_push_latency, "push_lake": prepare_push_lake,
    "push_catalog": prepare_push_catalog}
