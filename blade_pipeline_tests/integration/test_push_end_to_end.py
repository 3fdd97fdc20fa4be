"""A push source end to end on real parts: clients push sortie records to `blade ingest-server`
(NATS JetStream at 127.0.0.1:4222), its drain writes them into the lake by day, the drained
sensor asks for the days, and the source's job stages, checks and uploads them to the real
catalog service: every acknowledged record reaches the catalog once, with its tenant in the
item's metadata."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import nats
import pytest

from blade_pipeline.config.sources import load_sources
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.defs.push_sensor import evaluate_drained
from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.push.auth import mint_token
from blade_pipeline.push.drain import drain_lag
from blade_pipeline.sources.pushed_rows import PushedRows
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN
from blade_pipeline_tests.expectations import catalog_items
from blade_pipeline_tests.integration.test_ingest_server import SECRET
from blade_pipeline_tests.nats_support import NATS_URL, nats_answers, run_async

pytestmark = pytest.mark.skipif(not nats_answers(),
                                reason="NATS does not answer on 127.0.0.1:4222 (CI starts it)")
SOURCES = """
sources:
  - name: sortie_events
    display_name: Sortie events (pushed)
    data_type: sortie
    kind: push
    push:
      columns: {sortie_id: string, tail_number: string, aircraft_type: string,
                mission_type: string, takeoff_time: timestamp, landing_time: timestamp,
                flight_hours: float, base: string, status: string, classification: string,
                last_modified: timestamp}
    primary_key: sortie_id
    item_id_prefix: SEV
    classification: {column: classification, default: UNCLASS}
    partition_start: "2026-11-01"
"""
DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]


def _records(start: int, count: int, day: str) -> list[dict]:
    return [{"sortie_id": f"{i:09d}", "tail_number": f"{10 + i % 80:02d}-{i % 9000:04d}",
             "aircraft_type": "C-17", "mission_type": "TRAINING",
             "takeoff_time": f"{day}T08:00:00Z", "landing_time": f"{day}T10:30:00Z",
             "flight_hours": 2.5, "base": "DOVER", "status": "COMPLETED",
             "classification": "UNCLASS", "last_modified": f"{day}T12:00:00Z"}
            for i in range(start, start + count)]


def test_pushed_records_reach_the_catalog_once_with_their_tenant(tmp_path, start_catalog):
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(SOURCES)
    [source] = load_sources(sources_file)
    stream, lake_dir, port = f"BLADE_E2E_{uuid.uuid4().hex[:10].upper()}", tmp_path / "lake", \
        free_port()
    server = ServerProcess(blade_command("ingest-server", "--port", str(port)), port,
                           tmp_path / "server.log")
    server.start("/healthz", env={"BLADE_SOURCES_FILE": str(sources_file),
                                  "BLADE_INGEST_STREAM": stream, "BLADE_NATS_URL": NATS_URL,
                                  "BLADE_INGEST_JWT_SECRET": SECRET,
                                  "BLADE_LAKE_URI": str(lake_dir)})
    try:
        sent = 0
        for n, (tenant, day) in enumerate([("acme", DAYS[0]), ("acme", DAYS[1]),
                                           ("globex", DAYS[2]), ("acme", DAYS[1])]):
            body = "".join(json.dumps(r) + "\n" for r in _records(1000 * n, 400, day))
            token = mint_token(SECRET, tenant, ["sortie_events"], "blade-ingest")
            for _attempt in range(2):  # a client retrying its batch: stored once
                answer = httpx.post(f"{server.base_url}/v1/ingest/sortie_events",
                                    content=body.encode(), timeout=30, headers={
                                        "Authorization": f"Bearer {token}",
                                        "Idempotency-Key": f"batch-{n}",
                                        "Content-Type": "application/x-ndjson"})
                assert answer.status_code == 200, answer.text
            sent += 400
        lake = ParquetLake(uri=str(lake_dir))
        pushed = PushedRows(lake=lake)
        deadline = time.monotonic() + 60
        while pushed.committed("sortie_events").sequence < 4:
            assert time.monotonic() < deadline, "the drain did not commit the 4 batches"
            time.sleep(0.2)
        # per day, the last commit that wrote into it (what the drained sensor reads)
        committed = pushed.committed("sortie_events")
        assert set(committed.days) == set(DAYS)
        assert max(committed.days.values()) == committed.commit >= 1
        lag = 'blade_ingest_drain_lag_batches{source="sortie_events"} 0.0'
        while lag not in httpx.get(f"{server.base_url}/metrics").text:
            assert time.monotonic() < deadline, "the drain's lag never reads 0"
            time.sleep(0.2)
        assert drain_lag(NATS_URL, stream, "sortie_events") == 0  # what the sensor asks
        assert drain_lag(NATS_URL, stream, "no_such_source") is None
    finally:
        server.stop()
        run_async(_delete_stream(stream))

    assert drain_lag("nats://127.0.0.1:1", stream, "sortie_events", timeout=0.5) is None
    partitions = daily_partitions(source)
    result = evaluate_drained(source, pushed, None, partitions, lag=0)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"]) == (DAYS[0], DAYS[-1])
    [observed] = result.asset_events  # the lag, plotted on the staged asset
    assert observed.metadata["log_lag_batches"].value == 0
    again = evaluate_drained(source, pushed, result.cursor, partitions, lag=0)
    assert not again.run_requests and not again.asset_events  # nothing new, lag unchanged
    assert "nothing drained after commit" in again.skip_reason.skip_message
    assert "log lag 0 batches" in again.skip_reason.skip_message
    assert evaluate_drained(source, pushed, again.cursor, partitions, lag=3).asset_events

    catalog = start_catalog()
    client = CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN)
    run = dg.materialize(
        build_blade_assets(source), instance=dg.DagsterInstance.ephemeral(),
        resources={"pushed": pushed, "lake": lake, "catalog": client}, tags=request.tags)
    assert run.success
    items = catalog_items(client, source.catalog_data_source)
    assert len(items) == sent == len({i["item_id"] for i in items})
    def tenant(item_id: str) -> str:
        metadata = client.get(item_id)["item"]["metadata"]
        return (json.loads(metadata) if isinstance(metadata, str) else metadata)["tenant"]

    assert tenant("SEV-000000000") == "acme" and tenant("SEV-000002000") == "globex"
    assert not (Path(tmp_path) / "server.log").read_text().count(SECRET)


async def _delete_stream(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
