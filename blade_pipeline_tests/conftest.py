"""Shared fixtures: the real dev services started as subprocesses on free loopback ports."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from blade_pipeline.devservices.processes import (
    ServerProcess,
    blade_command,
    free_port,
    stop_all,
)
from blade_pipeline.devservices.s3 import create_bucket, start_s3
from blade_pipeline_tests.postgres import fresh_pg_database, pg_answers

REPO_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_TOKEN = "test-warehouse-token"
CATALOG_TOKEN = "test-catalog-token-3c9d"
#: Seeded history ends on a fixed date, so tests can rebuild the same rows in-process.
END_DATE = dt.date(2026, 6, 30)
BIG_ROWS = 1_000_000


#: The steps' RetryPolicy waits this long before its first retry (production: 2 s, doubling):
#: the fault cases exercise the retries without waiting out production delays.
STEP_RETRY_DELAY_SECONDS = "0.2"


def pytest_configure(config: pytest.Config) -> None:
    # before any test module imports the step definitions (the policy is read at import)
    os.environ.setdefault("BLADE_STEP_RETRY_DELAY_SECONDS", STEP_RETRY_DELAY_SECONDS)


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
def started_servers() -> Iterator[list[tuple[ServerProcess, bool]]]:
    """Every server the factories below started in this session, with whether it serves the
    whole session; the ones still running stop when the session ends."""
    started: list[tuple[ServerProcess, bool]] = []
    yield started
    stop_all([server for server, _ in started])


@pytest.fixture(scope="module", autouse=True)
def stop_module_servers(started_servers) -> Iterator[None]:
    """The servers a module's tests and fixtures started stop when the module ends (after its
    own fixtures' teardown): idle servers do not pile up over the session."""
    first = len(started_servers)
    yield
    stop_all([server for server, session in started_servers[first:] if not session])


@pytest.fixture(scope="session")
def start_warehouse(tmp_path_factory, started_servers) -> Callable[..., ServerProcess]:
    """Factory: start a mock warehouse with ``rows`` per table and extra CLI flags; it stops
    when the module that started it ends (``session=True``: when the session ends)."""

    def start(rows: int = 2_000, *extra: str, session: bool = False) -> ServerProcess:
        server = _start_warehouse(tmp_path_factory.mktemp("warehouse"), rows, *extra)
        started_servers.append((server, session))
        return server

    return start


@pytest.fixture(scope="session")
def big_warehouse(start_warehouse) -> ServerProcess:
    """One mock warehouse with 1M rows per table, shared by the whole session."""
    return start_warehouse(BIG_ROWS, session=True)


def warehouse_url(server: ServerProcess, warehouse_id: str = "test") -> str:
    return f"{server.base_url}/sql/1.0/warehouses/{warehouse_id}"


@pytest.fixture(scope="session")
def start_catalog(tmp_path_factory, started_servers) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a catalog service (fresh SQLite store unless ``db`` is given); it stops
    when the module that started it ends. A plain catalog (no flags, no ``db``) is taken
    from a spare launched when the previous one was taken: its ~2 s of process start overlap
    the test that ran meanwhile."""

    def launch(*extra: str, db: Path | None = None) -> ServerProcess:
        directory = tmp_path_factory.mktemp("catalog")
        port = free_port()
        server = ServerProcess(
            blade_command("mock-catalog", "--port", str(port), "--db",
                          str(db or directory / "catalog.sqlite3"), "--token", CATALOG_TOKEN,
                          *extra),
            port, directory / "catalog.log")
        server.launch()
        return server

    spares: list[ServerProcess] = []

    def start(*extra: str, db: Path | None = None) -> ServerProcess:
        plain = not extra and db is None
        server = spares.pop() if plain and spares else launch(*extra, db=db)
        if plain:
            spares.append(launch())
        server.wait_ready("/healthz", timeout=60)
        started_servers.append((server, False))
        return server

    yield start
    stop_all(spares)


#: Credentials of the loopback S3 API (moto accepts any): the standard AWS variables.
S3_ENV = {"AWS_ACCESS_KEY_ID": "test-s3-key", "AWS_SECRET_ACCESS_KEY": "test-s3-secret-7b1e",
          "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """An S3-compatible API (moto's server mode) on a free loopback port, for the session."""
    for name, value in S3_ENV.items():
        os.environ.setdefault(name, value)
    server = start_s3(free_port(), tmp_path_factory.mktemp("s3") / "s3.log")
    yield server
    server.stop()


def make_bucket(s3_server: ServerProcess, name: str) -> str:
    """Create a bucket ``<name>-<unique>`` on the loopback S3 API; returns ``s3://bucket``."""
    bucket = "".join(c if c.isalnum() or c == "-" else "-" for c in f"{name}-{free_port()}")
    return create_bucket(s3_server, bucket)


@pytest.fixture
def s3_lake_uri(s3_server, request) -> str:
    """``s3://<fresh bucket>/lake`` on the loopback S3 API (the bucket created here)."""
    return make_bucket(s3_server, f"blade-{request.node.name.lower()[:30].strip('_-')}") + "/lake"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432 for this session (dropped afterwards)."""
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    with fresh_pg_database("blade_test") as url:
        yield url


@pytest.fixture(scope="session")
def pg_dagster_home(pg_url, tmp_path_factory) -> Path:
    """DAGSTER_HOME holding the repository's own dagster.yaml (PostgreSQL storage)."""
    home = tmp_path_factory.mktemp("dagster_home_pg")
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_PG_URL"] = pg_url
    return home


@pytest.fixture(scope="session")
def dagster_instance(pg_dagster_home) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of the integration suite: PostgreSQL-backed (dagster-postgres)."""
    with dg.DagsterInstance.from_config(str(pg_dagster_home)) as instance:
        yield instance


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most ``slow`` tests first, each module's tests together in their order:
    with two xdist workers (``--dist loadfile``: a module on one worker) the long modules start
    at once instead of ending the run alone."""
    slow: dict[str, int] = {}
    for item in items:
        slow[item.nodeid.split("::")[0]] = (slow.get(item.nodeid.split("::")[0], 0)
                                            + bool(item.get_closest_marker("slow")))
    modules = list(slow)
    items.sort(key=lambda item: (-slow[item.nodeid.split("::")[0]],
                                 modules.index(item.nodeid.split("::")[0])))
