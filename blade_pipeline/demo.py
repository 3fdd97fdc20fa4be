"""`blade demo`: the mock warehouse and the Dagster UI on loopback, ready to click.

Everything lives under ``--home`` (default ``.blade/``): the warehouse's DuckDB file, service
logs and the Dagster instance (SQLite unless ``DAGSTER_PG_URL`` is set, then PostgreSQL via the
repository's dagster.yaml).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from blade_pipeline.devservices.processes import ServerProcess, blade_command, port_in_use

REPO_ROOT = Path(__file__).resolve().parent.parent
SQLITE_INSTANCE_YAML = """\
# Embedded demo instance: SQLite storage under this directory (written by `blade demo`).
telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 1
"""


@dataclass
class DemoSettings:
    home: Path = Path(".blade")
    rows: int = 20_000
    warehouse_port: int = 8765
    dagster_port: int = 3000
    warehouse_token: str = "dev-warehouse-token"
    change_interval: float = 0.0


def dagster_home(settings: DemoSettings) -> Path:
    """DAGSTER_HOME for the demo: the repo's PostgreSQL config if DAGSTER_PG_URL is set."""
    if os.environ.get("DAGSTER_PG_URL"):
        return REPO_ROOT
    home = (settings.home / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(SQLITE_INSTANCE_YAML)
    return home


def _check_ports(settings: DemoSettings) -> None:
    for name, port in (("mock warehouse", settings.warehouse_port),
                       ("Dagster UI", settings.dagster_port)):
        if port_in_use(port):
            raise SystemExit(f"port {port} for the {name} is already in use: stop what runs "
                             "there (an earlier demo?) or pick another port")


def run_demo(settings: DemoSettings) -> int:
    """Start the services, print where they are, wait for Ctrl-C, stop them."""
    _check_ports(settings)
    home = settings.home.resolve()
    logs = home / "logs"
    warehouse_url = f"http://127.0.0.1:{settings.warehouse_port}/sql/1.0/warehouses/demo"
    env = {
        "BLADE_WAREHOUSE_URL": warehouse_url,
        "DATABRICKS_TOKEN": settings.warehouse_token,
        "DAGSTER_HOME": str(dagster_home(settings)),
    }
    warehouse = ServerProcess(
        blade_command("mock-warehouse", "--port", str(settings.warehouse_port),
                      "--db", str(home / "warehouse.duckdb"), "--rows", str(settings.rows),
                      "--token", settings.warehouse_token,
                      "--change-interval", str(settings.change_interval)),
        settings.warehouse_port, logs / "warehouse.log")
    dagster_bin = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    dagster = ServerProcess(
        [dagster_bin, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
         "-p", str(settings.dagster_port)],
        settings.dagster_port, logs / "dagster.log")
    started = []
    try:
        print(f"starting the mock warehouse ({settings.rows} rows per table) ...", flush=True)
        warehouse.start("/healthz", timeout=300, env=env)
        started.append(warehouse)
        print(f"  warehouse: {warehouse_url}  (token {settings.warehouse_token})", flush=True)
        print("starting Dagster (webserver + daemon) ...", flush=True)
        dagster.start("/server_info", timeout=180, env={**env, "PYTHONUNBUFFERED": "1"})
        started.append(dagster)
        print(f"  Dagster UI: http://127.0.0.1:{settings.dagster_port}", flush=True)
        print(f"logs in {logs}; Ctrl-C stops everything.", flush=True)
        while all(p.popen and p.popen.poll() is None for p in started):
            time.sleep(1)
        dead = next(p for p in started if p.popen and p.popen.poll() is not None)
        print(f"{dead.args[0]} exited; see {dead.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        for proc in reversed([warehouse, dagster]):
            proc.stop(timeout=20)
