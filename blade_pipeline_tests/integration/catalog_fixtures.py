"""Helpers for catalog tests and the bench: start the service, build BLADE items tables."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline_tests.servers import ServerProcess, blade_command, free_port, running

CATALOG_TOKEN = "test-catalog-token-9f3b1c7e"
ITEMS_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("data_type", pa.string()), ("data", pa.string()),
    ("classification", pa.string()), ("last_modified", pa.timestamp("us", tz="UTC")),
    ("content_hash", pa.string()), ("metadata", pa.string()),
])


def catalog_args(db: Path, port: int, token: str = CATALOG_TOKEN, *extra: str) -> list[str]:
    return blade_command("mock-catalog", "--port", str(port), "--db", str(db),
                         "--token", token, *extra)


@contextlib.contextmanager
def catalog_service(workdir: Path, *extra: str, db: Path | None = None,
                    token: str = CATALOG_TOKEN) -> Iterator[ServerProcess]:
    """A `blade mock-catalog` subprocess on a free loopback port, stopped on exit."""
    port = free_port()
    args = catalog_args(db or workdir / "catalog.sqlite3", port, token, *extra)
    with running(args, port, workdir / f"catalog-{port}.log", "/healthz") as server:
        yield server


def client_for(server: ServerProcess, **overrides: object) -> CatalogClient:
    settings: dict[str, object] = {"base_url": server.base_url, "token": CATALOG_TOKEN,
                                   "backoff_base_s": 0.01, "backoff_max_s": 0.1}
    return CatalogClient(**{**settings, **overrides})


def make_items(n: int, start: int = 0, data_type: str = "maintenance", prefix: str = "MAINT",
               revision: int = 0) -> pa.Table:
    """``n`` maintenance-like BLADE items, ids ``{prefix}-{start..start+n-1}`` (vectorised).

    ``revision`` changes every item's data (and so its content hash)."""
    idx = pa.array(range(start, start + n), pa.int64())
    num = pc.utf8_lpad(pc.cast(idx, pa.string()), 7, "0")
    tail = pc.binary_join_element_wise("AF-", pc.cast(pc.bit_wise_and(idx, 1023), pa.string()),
                                       "")
    priorities = pa.array(["HIGH", "MEDIUM", "LOW"])
    priority = pc.take(priorities, pc.cast(pc.bit_wise_and(idx, 1), pa.int32()))
    rev = str(revision)
    data = pc.binary_join_element_wise(
        '{"record_id":"', num, '","tail_number":"', tail,
        '","maint_type":"INSPECTION","description":"Scheduled phase inspection of the aircraft, '
        'revision ', rev, '","due_date":"2024-07-01","priority":"', priority,
        '","status":"OPEN","labor_hours":12.5,"base":"JBSA","classification":"UNCLASS",'
        '"last_modified":"2024-06-01T12:00:00Z"}', "")
    hashes = pa.array([hashlib.sha256(d.encode()).hexdigest() for d in data.to_pylist()])
    metadata = ('{"source":"databricks","warehouse_id":"demo","catalog":"blade","schema":"ops",'
                f'"table":"blade_{data_type}_data","ingested_at":"2024-06-02T00:00:00Z",'
                '"run_id":"bench"}')
    modified = datetime(2024, 6, 1, 12, tzinfo=UTC)
    return pa.table({
        "item_id": pc.binary_join_element_wise(f"{prefix}-", num, ""),
        "data_type": pa.array([data_type] * n),
        "data": data,
        "classification": pa.array(["UNCLASS"] * n),
        "last_modified": pa.array([modified] * n, pa.timestamp("us", tz="UTC")),
        "content_hash": hashes,
        "metadata": pa.array([metadata] * n),
    }, schema=ITEMS_SCHEMA)
