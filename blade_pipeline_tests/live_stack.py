"""A live Dagster stack on loopback: dagster-webserver + dagster-daemon on a PostgreSQL instance,
wired to an already started mock warehouse and catalog.

Used by the live GraphQL tests (``integration/test_live_dagster.py``) and the browser tests
(``ui/``), which each start their own warehouse and catalog with the data they need.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from blade_pipeline.config.sources import SOURCES_FILE, default_sources, load_sources
from blade_pipeline.devservices.relational_seed import seed_mysql, seed_postgres
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import (
    CATALOG_TOKEN,
    END_DATE,
    REPO_ROOT,
    WAREHOUSE_TOKEN,
    warehouse_url,
)
from blade_pipeline_tests.dagster_gql import DagsterGraphQL
from blade_pipeline_tests.mysql import MYSQL_SERVER, fresh_mysql_database
from blade_pipeline_tests.postgres import fresh_pg_database
from blade_pipeline_tests.servers import ServerProcess, free_port, stored_items

LIVE_PG_ROWS = 2_000  # rows of the PostgreSQL source's table in a live stack
#: The ``kind: mysql`` source a live stack adds to the packaged sources when asked
#: (``live_dagster(mysql_source=True)``): unit C's maintenance records on MariaDB.
LIVE_MYSQL_SOURCE = {
    "name": "unit_c_maintenance", "display_name": "Aircraft maintenance (unit C, MariaDB)",
    "data_type": "maintenance_unit_c", "model": "maintenance", "kind": "mysql",
    "enabled": True, "database": {"table": "blade_maintenance_data"},
    "primary_key": "record_id", "watermark_column": "last_modified", "item_id_prefix": "MAINTC",
    "classification": {"column": "classification", "default": "UNCLASS"},
    "partition_start": "2024-01-01", "max_invalid_fraction": 0.05}
DAEMON_HEALTH = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""


@dataclass
class LiveStack:
    """Clients of a running stack, and its Dagster processes."""

    gql: DagsterGraphQL
    lake: ParquetLake
    catalog: CatalogClient
    warehouse: DatabricksWarehouse
    web: ServerProcess
    daemon: ServerProcess
    catalog_server: ServerProcess
    warehouse_server: ServerProcess
    landing: Path  # the kind: csv sources' landing folder (BLADE_LANDING_URI)

    @property
    def base_url(self) -> str:
        """The Dagster UI, e.g. ``http://127.0.0.1:PORT``."""
        return self.web.base_url


def make_pg_dagster_home(directory: Path) -> Path:
    """``directory`` as a DAGSTER_HOME holding the repository's dagster.yaml (PostgreSQL)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", directory / "dagster.yaml")
    return directory


@contextlib.contextmanager
def live_dagster(warehouse: ServerProcess, catalog: ServerProcess, dagster_home: Path,
                 pg_url: str, workdir: Path, *, lake_uri: str | None = None,
                 s3_endpoint: str | None = None, source_rows: int = LIVE_PG_ROWS,
                 source_days: int = 30, mysql_source: bool = False,
                 **extra_env: str) -> Iterator[LiveStack]:
    """Start webserver + daemon on ``dagster_home`` (PostgreSQL at ``pg_url``) with the
    pipeline pointed at ``warehouse``, ``catalog`` and a lake under ``workdir`` (or at
    ``lake_uri``, e.g. ``s3://bucket/lake`` on ``s3_endpoint``); stop them on exit.
    ``extra_env`` adds environment variables (e.g. BLADE_SENSOR_INTERVAL_SECONDS). The
    ``kind: postgres`` sources read a fresh database holding ``source_rows`` generated rows
    over the ``source_days`` days before END_DATE; with ``mysql_source`` the stack's sources
    file (``BLADE_SOURCES_FILE``) adds LIVE_MYSQL_SOURCE, read from a fresh MariaDB database
    seeded the same way."""
    lake_uri = lake_uri or str(workdir / "lake")
    with contextlib.ExitStack() as stack:
        source_db = stack.enter_context(fresh_pg_database("blade_units"))
        source_url = source_db.replace("postgresql+psycopg2://", "postgresql://")
        seed_postgres(source_url, source_rows, 5, end=END_DATE, days=source_days,
                      data_types=sorted({s.model_name for s in default_sources()
                                         if s.kind == "postgres"}))
        if mysql_source:
            schema = stack.enter_context(fresh_mysql_database("blade_unit_c"))
            seed_mysql(f"{MYSQL_SERVER}/", source_rows, 5, end=END_DATE, days=source_days,
                       schema=schema, data_types=[LIVE_MYSQL_SOURCE["model"]])
            entry = {**LIVE_MYSQL_SOURCE,
                     "database": {**LIVE_MYSQL_SOURCE["database"], "schema": schema}}
            extra_env = {"BLADE_SOURCES_FILE": str(_sources_file_with(workdir, entry)),
                         "BLADE_MYSQL_URL": f"{MYSQL_SERVER}/{schema}", **extra_env}
        yield from _live_dagster(warehouse, catalog, dagster_home, pg_url, workdir, lake_uri,
                                 s3_endpoint, source_url, extra_env)


def _sources_file_with(workdir: Path, *entries: dict) -> Path:
    """A sources file holding the packaged sources and ``entries`` (validated here, as the
    code location will)."""
    sources = yaml.safe_load(SOURCES_FILE.read_text())
    sources["sources"] += list(entries)
    path = workdir / "sources.yaml"
    path.write_text(yaml.safe_dump(sources, sort_keys=False))
    load_sources(path)
    return path


def _live_dagster(warehouse: ServerProcess, catalog: ServerProcess, dagster_home: Path,
                  pg_url: str, workdir: Path, lake_uri: str, s3_endpoint: str | None,
                  source_url: str, extra_env: dict[str, str]) -> Iterator[LiveStack]:
    # the kind: csv source's landing folder is empty until a test drops a file
    landing = workdir / "landing"
    env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_URL": pg_url,
           "BLADE_POSTGRES_URL": source_url, "BLADE_LANDING_URI": str(landing),
           "BLADE_WAREHOUSE_URL": warehouse_url(warehouse), "DATABRICKS_TOKEN": WAREHOUSE_TOKEN,
           "BLADE_CATALOG_URL": catalog.base_url, "BLADE_CATALOG_TOKEN": CATALOG_TOKEN,
           "BLADE_LAKE_URI": lake_uri, **({"BLADE_S3_ENDPOINT": s3_endpoint} if s3_endpoint
                                          else {}),
           # batches smaller than the default: the pause cases terminate between batches
           "BLADE_CATALOG_BATCH_SIZE": "10000", **extra_env}
    logs = workdir / "logs"
    bin_dir = Path(sys.executable).parent  # the venv's dagster-webserver / dagster-daemon
    port = free_port()
    web = ServerProcess([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                         "-w", str(REPO_ROOT / "workspace.yaml")], port, logs / "web.log")
    daemon = ServerProcess([str(bin_dir / "dagster-daemon"), "run", "-w",
                            str(REPO_ROOT / "workspace.yaml")], port, logs / "daemon.log")
    web.start("/server_info", timeout=180, env=env)
    try:
        daemon.start("/server_info", timeout=60, env=env)  # returns once it runs: see below
        wait_for_daemons(DagsterGraphQL(web.base_url), daemon)
        lake = ParquetLake(uri=lake_uri, s3_endpoint=s3_endpoint)
        yield LiveStack(gql=DagsterGraphQL(web.base_url), lake=lake,
                        catalog=CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN),
                        warehouse=DatabricksWarehouse(url=warehouse_url(warehouse),
                                                      token=WAREHOUSE_TOKEN),
                        web=web, daemon=daemon, catalog_server=catalog,
                        warehouse_server=warehouse, landing=landing)
    finally:
        daemon.stop(timeout=30)
        web.stop(timeout=30)


def wait_for_daemons(gql: DagsterGraphQL, daemon: ServerProcess, timeout: float = 180) -> None:
    """Until every required daemon heartbeats: before that, runs stay queued and sensors do not
    tick (the daemon loads the code location first, which takes a while on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = gql.query(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        waiting = sorted(s["daemonType"] for s in statuses if s["required"] and not s["healthy"])
        if not waiting:
            return
        if daemon.popen is not None and daemon.popen.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited:\n{daemon.log_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"daemons not healthy after {timeout}s: {waiting}\n"
                               f"{daemon.log_text()[-4000:]}")
        time.sleep(1)


def assert_catalog_holds_exactly_the_staged_items(stack: LiveStack, data_type: str,
                                                  *days: str) -> None:
    """The catalog holds exactly the days' staged items (no loss, no extra), each at version
    1 (nothing uploaded twice)."""
    items = stored_items(stack.catalog_server, f"BLADE:{data_type}")
    staged_ids = {i for day in days for i in stack.lake.parquet_file(  # a key may be on 2 days
        stack.lake.partition_dir(data_type, day)).read(columns=["item_id"]).column(0).to_pylist()}
    ids = [i["item_id"] for i in items]
    assert len(ids) == len(set(ids)) and set(ids) == staged_ids  # no loss, no extra
    assert {i["version"] for i in items} == {1}  # nothing uploaded twice with a new version
