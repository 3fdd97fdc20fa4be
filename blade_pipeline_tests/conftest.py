"""Shared fixtures: the real dev services started as subprocesses on free loopback ports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port

WAREHOUSE_TOKEN = "test-warehouse-token"
#: Seeded history ends on a fixed date, so tests can rebuild the same rows in-process.
END_DATE = dt.date(2026, 6, 30)
BIG_ROWS = 1_000_000


def _start_warehouse(directory: Path, rows: int, *extra: str) -> ServerProcess:
    port = free_port()
    server = ServerProcess(
        blade_command("mock-warehouse", "--port", str(port), "--db",
                      str(directory / "warehouse.duckdb"), "--rows", str(rows), "--seed", "7",
                      "--token", WAREHOUSE_TOKEN, "--end-date", END_DATE.isoformat(), *extra),
        port, directory / "warehouse.log")
    server.start("/healthz", timeout=300)
    return server


@pytest.fixture(scope="session")
def start_warehouse(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a mock warehouse with ``rows`` per table and extra CLI flags."""
    started: list[ServerProcess] = []

    def start(rows: int = 2_000, *extra: str) -> ServerProcess:
        server = _start_warehouse(tmp_path_factory.mktemp("warehouse"), rows, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def big_warehouse(start_warehouse) -> ServerProcess:
    """One mock warehouse with 1M rows per table, shared by the whole session."""
    return start_warehouse(BIG_ROWS)


def warehouse_url(server: ServerProcess, warehouse_id: str = "test") -> str:
    return f"{server.base_url}/sql/1.0/warehouses/{warehouse_id}"
