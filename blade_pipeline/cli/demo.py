"""`blade demo`: mock warehouse, catalog and the Dagster UI on loopback, with data flowing.

Starts the services, then launches a backfill of every data type's whole history (or of the
last ``--backfill-days`` days) through the Dagster webserver: one range run per data type, so
the UI shows runs, green partitions, checks and metadata, and the catalog's ``/api/v1/stats``
shows the items. It prints how long the history took and how many items landed.
Everything lives under ``--home`` (default ``.blade/``): the warehouse's DuckDB file, the
catalog's SQLite file, the Parquet lake, service logs and the Dagster instance (SQLite unless
``DAGSTER_PG_URL`` is set, then PostgreSQL via the repository's dagster.yaml).
``--lake s3`` puts the lake in a bucket of a loopback S3 API (moto's server, in memory) instead.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from blade_pipeline.config.settings import DEMO_INGEST_JWT_SECRET
from blade_pipeline.devservices.processes import ServerProcess, blade_command, port_in_use
from blade_pipeline.devservices.s3 import LOOPBACK_S3_ENV, create_bucket, start_s3

if TYPE_CHECKING:
    from blade_pipeline.config.sources import BladeSource

REPO_ROOT = Path(__file__).resolve().parents[2]  # blade_pipeline/cli/demo.py -> the checkout
HISTORY_DAYS = 730  # what the mock warehouse's generator seeds: the days before today
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions partitionNames }
    ... on PythonError { message }
  }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
RUN_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { message error { message } }
        ... on RunFailureEvent { message error { message } }
      }
    }
  }
}
"""
FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
WILL_RETRY_TAG = "dagster/will_retry"
RANGE_START_TAG, RANGE_END_TAG = ("dagster/asset_partition_range_start",
                                  "dagster/asset_partition_range_end")
DONE_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SQLITE_INSTANCE_YAML = """\
# Embedded demo instance: SQLite storage under this directory (written by `blade demo`).
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 6  # the history: one range run per data type, all at once
    dequeue_interval_seconds: 1
    tag_concurrency_limits:  # sensor runs (queued behind backfills: dagster/priority -1)
      - key: dagster/sensor_name  # never take more than 2 of the slots
        limit: 2
telemetry:
  enabled: false
python_logs:  # BLADE_LOG_FORMAT=json: every run's log records also as JSON lines on stderr
  dagster_handler_config:
    handlers:
      blade_json:
        class: blade_pipeline.ops.logs.JsonLinesHandler
        level: INFO
run_launcher:  # DefaultRunLauncher + run worker health checks (ops/run_launcher.py)
  module: blade_pipeline.ops.run_launcher
  class: LocalProcessRunLauncher
run_monitoring:  # a run whose worker process died is marked failed ...
  enabled: true
  poll_interval_seconds: 15
  # a run still STARTING after this long is failed: long enough for a range run's worker
  # on a busy 2-core machine, short enough to catch one that hangs
  start_timeout_seconds: 600
run_retries:  # ... and re-executed from failure (the upload resumes from its checkpoint);
  enabled: true  # not for step failures: one retry layer each (blade_pipeline/defs/failures.py)
  max_retries: 1
  retry_on_asset_or_op_failure: false
"""
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}
"""


@dataclass
class DemoSettings:
    home: Path = Path(".blade")
    rows: int = 20_000
    warehouse_port: int = 8765
    catalog_port: int = 8080
    dagster_port: int = 3000
    warehouse_token: str = "dev-warehouse-token"
    catalog_token: str = "dev-catalog-token"
    change_interval: float = 0.0
    backfill_days: int = HISTORY_DAYS
    lake: str = "local"  # or "s3": a bucket on the demo's loopback S3 API
    s3_port: int = 9000
    drop_interval: float = 60.0  # seconds between the CSV source's dropped files (0: none)
    ingest_port: int = 8090
    flight_port: int = 8815
    # the demo's ingest tokens: HS256 with the settings' development secret (what
    # `blade ingest-token` mints with when BLADE_INGEST_JWT_SECRET is not set)
    ingest_secret: str = DEMO_INGEST_JWT_SECRET
    push_interval: float = 10.0  # seconds between the demo client's live batches (0: none)


DEMO_BUCKET = "blade-demo"
DEMO_STREAM = "BLADE_DEMO"  # the demo's JetStream stream (BLADE_INGEST_STREAM)


def start_demo_s3(settings: DemoSettings, logs: Path) -> tuple[ServerProcess, dict[str, str]]:
    """The demo's loopback S3 API with its bucket; the lake's environment."""
    server = start_s3(settings.s3_port, logs / "s3.log")
    env = {**LOOPBACK_S3_ENV, "BLADE_LAKE_URI": f"{create_bucket(server, DEMO_BUCKET)}/lake",
           "BLADE_S3_ENDPOINT": server.base_url}
    return server, env


def dagster_home(settings: DemoSettings) -> Path:
    """DAGSTER_HOME for the demo: the repo's PostgreSQL config if DAGSTER_PG_URL is set."""
    if os.environ.get("DAGSTER_PG_URL"):
        return REPO_ROOT
    home = (settings.home / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(SQLITE_INSTANCE_YAML)
    return home


def seed_relational_sources(settings: DemoSettings) -> None:
    """The demo's ``kind: postgres`` sources: their tables in the machine's PostgreSQL
    (``BLADE_POSTGRES_URL`` or the demo's database), seeded by the warehouse's generator."""
    from blade_pipeline.config.sources import default_sources
    from blade_pipeline.devservices.relational_seed import (
        ensure_postgres_database,
        seed_postgres,
    )
    from blade_pipeline.sources.postgres import DEMO_POSTGRES_URL

    models = sorted({s.model_name for s in default_sources() if s.kind == "postgres"})
    if not models:
        return
    url = os.environ.get("BLADE_POSTGRES_URL") or DEMO_POSTGRES_URL
    where = url.rsplit("@", 1)[-1]
    try:
        ensure_postgres_database(url)
        counts = seed_postgres(url, settings.rows, seed=21, data_types=models)
    except Exception as exc:  # the demo runs on; the PostgreSQL source's sensor will say why
        print(f"  PostgreSQL {where} could not be seeded ({type(exc).__name__}: "
              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}): the "
              "kind: postgres sources will fail their runs and ticks until it answers",
              flush=True)
        return
    print(f"  PostgreSQL: {where} ({', '.join(f'{k} {v} rows' for k, v in counts.items())})",
          flush=True)


def _check_ports(settings: DemoSettings) -> None:
    ports = [("mock warehouse", settings.warehouse_port), ("catalog", settings.catalog_port),
             ("Dagster UI", settings.dagster_port)]
    if settings.lake == "s3":
        ports.append(("S3 API", settings.s3_port))
    if settings.push_interval > 0:
        ports += [("ingest API", settings.ingest_port), ("Arrow Flight", settings.flight_port)]
    for name, port in ports:
        if port_in_use(port):
            raise SystemExit(f"port {port} for the {name} is already in use: stop what runs "
                             "there (an earlier demo?) or pick another port")


def launch_backfill(dagster_url: str, source: BladeSource, partitions: list[str]) -> str:
    """A backfill of ``source``'s staged + catalog assets over ``partitions`` (one range run
    with the single-run backfill policy); its id."""
    from blade_pipeline.defs.assets import catalog_key, staged_key

    params = {"partitionNames": partitions, "fromFailure": False,
              "assetSelection": [{"path": k.path}
                                 for k in (staged_key(source), catalog_key(source))]}
    launched = _graphql(dagster_url, LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill of {source.data_type} refused: {launched}")
    return launched["backfillId"]


def launch_backfills(dagster_url: str, days: int) -> list[str]:
    """One backfill per data type over the ``days`` days before today (from its
    ``partition_start`` at the earliest); returns their ids."""
    from blade_pipeline.config.sources import default_sources

    today = dt.datetime.now(dt.UTC).date()
    ids = []
    for source in default_sources():
        if not source.enabled or source.kind in ("csv", "push"):  # their days come with
            continue  # their files (CSV drops) or batches (pushes), through their sensors
        first = max(today - dt.timedelta(days=days), source.partition_start)
        ids.append(launch_backfill(dagster_url, source, [
            (first + dt.timedelta(days=n)).isoformat() for n in range((today - first).days)]))
    return ids


def _graphql(dagster_url: str, query: str, **variables: object) -> dict:
    answer = httpx.post(f"{dagster_url}/graphql", timeout=60,
                        json={"query": query, "variables": variables})
    answer.raise_for_status()
    return answer.json()["data"]


def _covered_days(runs: list[dict]) -> set[str]:
    """The days the successful range runs of a backfill covered (their range tags)."""
    days: set[str] = set()
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        if run["status"] != "SUCCESS" or not first or not last:
            continue
        day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        while day <= end:
            days.add(day.isoformat())
            day += dt.timedelta(days=1)
    return days


def backfill_state(dagster_url: str, backfill_id: str) -> tuple[str, list[dict]]:
    """``done``, ``failed`` or ``running``, and the backfill's runs.

    Done as soon as its runs have succeeded over every requested day, failed as soon as a
    run of it has failed for good (not to be retried): the backfill daemon marks the backfill
    at its next iteration (up to 30 s later), which adds nothing to what the user sees."""
    data = _graphql(dagster_url, BACKFILL_STATUS, id=backfill_id)
    backfill = data["partitionBackfillOrError"]
    runs = data["runsOrError"].get("results", [])
    status = backfill.get("status", "UNKNOWN")
    if status in {"COMPLETED", "COMPLETED_SUCCESS"}:
        return "done", runs
    if status in DONE_STATUSES:
        return "failed", runs
    if not runs or any(r["status"] not in FINISHED_RUN_STATUSES for r in runs):
        return "running", runs
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if failed and all({t["key"]: t["value"] for t in r["tags"]}.get(WILL_RETRY_TAG) == "false"
                      for r in failed):  # (run retries say so on each failed run)
        return "failed", runs
    wanted = set(backfill.get("partitionNames") or [])
    return ("done" if not failed and wanted and wanted <= _covered_days(runs)
            else "running"), runs


def failure_cause(dagster_url: str, run_id: str) -> str:
    """A failed run's own cause: its first failed step's error, else the run failure's
    message (e.g. the run monitor's start timeout)."""
    data = _graphql(dagster_url, RUN_FAILURES, runId=run_id)
    events = data["logsForRun"].get("events", [])
    for kind in ("ExecutionStepFailureEvent", "RunFailureEvent"):
        for event in events:
            if event["__typename"] == kind:
                text = ((event.get("error") or {}).get("message") or event.get("message")
                        or "").strip()
                if text:
                    return text.splitlines()[0][:400]
    return "the run failed (see its event log)"


def wait_for_backfills(dagster_url: str, catalog_url: str, token: str, ids: list[str],
                       started: float, timeout_s: float = 1800) -> bool:
    """Wait until every backfill is done, then print how long they took and what landed
    (and, for a failed one, why each of its failed runs failed). True when all succeeded."""
    states: dict[str, tuple[str, list[dict]]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {i: backfill_state(dagster_url, i) for i in ids}
        if all(state != "running" for state, _ in states.values()):
            break
        time.sleep(1)
    else:
        print(f"the backfills are still running after {timeout_s:.0f}s: see "
              f"{dagster_url}/overview/backfills", flush=True)
        return False
    stats = httpx.get(f"{catalog_url}/api/v1/stats", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}).json()
    failed = {i: runs for i, (state, runs) in states.items() if state == "failed"}
    print(f"history loaded in {time.perf_counter() - started:.0f}s: {stats['total']} items in "
          f"the catalog ({', '.join(f'{k} {v}' for k, v in stats['data_sources'].items())})"
          + (f"; {len(failed)} backfill(s) failed:" if failed else ""), flush=True)
    for backfill_id, runs in failed.items():
        bad = [r for r in runs if r["status"] != "SUCCESS"]
        for run in bad:
            print(f"  backfill {backfill_id}, run {run['runId'][:8]} ({run['status']}): "
                  f"{failure_cause(dagster_url, run['runId'])}  -> "
                  f"{dagster_url}/runs/{run['runId']}", flush=True)
        if not bad:
            print(f"  backfill {backfill_id}: no run of it failed; see "
                  f"{dagster_url}/overview/backfills/{backfill_id}", flush=True)
    return not failed


def start_csv_drops(landing: Path, interval_s: float):  # -> CsvDropper | None
    """A supplier dropping a file every ``interval_s`` into each ``kind: csv`` source's
    folder of supply records (the demo's CSV source)."""
    from blade_pipeline.config.sources import default_sources
    from blade_pipeline.devservices.csv_dropper import CsvDropper

    folders = [s.csv.folder for s in default_sources()
               if s.csv is not None and s.model_name == "supply"]
    if not folders:
        return None
    dropper = CsvDropper(landing / folders[0])
    dropper.run(interval_s)
    print(f"  CSV drops: a file of {dropper.rows_per_file} supply rows (+ one broken line) "
          f"every {interval_s:.0f}s in {landing / folders[0]}", flush=True)
    return dropper


def start_push(settings: DemoSettings, env: dict[str, str], logs: Path):
    """The ingest server (with its drain) and the demo's push client of the ``kind: push``
    source; ``(None, None)`` with a message when NATS does not answer (the rest runs on)."""
    from blade_pipeline.cli.demo_pusher import TENANT, DemoPusher
    from blade_pipeline.config.sources import default_sources
    from blade_pipeline.push.auth import mint_token

    source = next((s for s in default_sources() if s.kind == "push" and s.enabled), None)
    if source is None or source.push is None:
        return None, None
    server = ServerProcess(
        blade_command("ingest-server", "--port", str(settings.ingest_port),
                      "--flight-port", str(settings.flight_port)),
        settings.ingest_port, logs / "ingest-server.log")
    nats_url = env.get("BLADE_NATS_URL", "nats://127.0.0.1:4222")
    try:
        server.start("/healthz", timeout=60, env=env)
        healthy = httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    except (RuntimeError, TimeoutError, httpx.HTTPError):
        healthy = False
    if not healthy:
        server.stop()
        print(f"  NATS does not answer at {nats_url} (see {logs / 'ingest-server.log'}): "
              f"the {source.name} push source gets nothing; start nats-server -js and rerun",
              flush=True)
        return None, None
    token = mint_token(settings.ingest_secret, TENANT, [source.name], "blade-ingest",
                       dt.timedelta(days=1))
    pusher = DemoPusher(server.base_url, token, source.name, list(source.push.columns))
    pusher.run(settings.push_interval)
    print(f"  ingest API: {server.base_url}/v1/ingest/{source.name} (Arrow Flight on "
          f"grpc://127.0.0.1:{settings.flight_port}; stream {env['BLADE_INGEST_STREAM']} on "
          f"{nats_url}); a demo client pushes {pusher.pool.num_rows} sortie events of the last "
          f"week, then {pusher.live_rows} every {settings.push_interval:.0f}s", flush=True)
    return server, pusher


def _dagster_bin(name: str) -> str:
    """A Dagster command of this interpreter's environment (the venv's)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def run_demo(settings: DemoSettings) -> int:
    """Start the services, print where they are, wait for Ctrl-C, stop them."""
    _check_ports(settings)
    home = settings.home.resolve()
    logs = home / "logs"
    warehouse_url = f"http://127.0.0.1:{settings.warehouse_port}/sql/1.0/warehouses/demo"
    catalog_url = f"http://127.0.0.1:{settings.catalog_port}"
    dagster_url = f"http://127.0.0.1:{settings.dagster_port}"
    env = {
        "BLADE_WAREHOUSE_URL": warehouse_url,
        "DATABRICKS_TOKEN": settings.warehouse_token,
        "BLADE_CATALOG_URL": catalog_url,
        "BLADE_CATALOG_TOKEN": settings.catalog_token,
        "BLADE_LAKE_URI": str(home / "lake"),
        "BLADE_LANDING_URI": str(home / "landing"),
        "DAGSTER_HOME": str(dagster_home(settings)),
        "BLADE_INGEST_JWT_SECRET": settings.ingest_secret,
        "BLADE_INGEST_STREAM": os.environ.get("BLADE_INGEST_STREAM", DEMO_STREAM),
    }
    warehouse = ServerProcess(
        blade_command("mock-warehouse", "--port", str(settings.warehouse_port),
                      "--db", str(home / "warehouse.duckdb"), "--rows", str(settings.rows),
                      "--token", settings.warehouse_token,
                      "--change-interval", str(settings.change_interval)),
        settings.warehouse_port, logs / "warehouse.log")
    catalog = ServerProcess(
        blade_command("mock-catalog", "--port", str(settings.catalog_port),
                      "--db", str(home / "catalog.sqlite3"), "--token", settings.catalog_token),
        settings.catalog_port, logs / "catalog.log")
    # Webserver and daemon as two processes (what `dagster dev` runs): the backfills are
    # requested before the daemon starts, so its first backfill iteration takes them instead
    # of one up to 30 s later (the backfill daemon's fixed interval).
    workspace = str(REPO_ROOT / "workspace.yaml")
    webserver = ServerProcess(
        [_dagster_bin("dagster-webserver"), "-w", workspace, "-h", "127.0.0.1",
         "-p", str(settings.dagster_port)], settings.dagster_port, logs / "dagster-webserver.log")
    daemon = ServerProcess([_dagster_bin("dagster-daemon"), "run", "-w", workspace],
                           settings.dagster_port, logs / "dagster-daemon.log")
    started: list[ServerProcess] = []
    s3: ServerProcess | None = None
    ingest: ServerProcess | None = None
    dropper = pusher = None
    try:
        if settings.lake == "s3":
            s3, s3_env = start_demo_s3(settings, logs)
            started.append(s3)
            env.update(s3_env)
            print(f"  lake: {s3_env['BLADE_LAKE_URI']} on {s3.base_url} (moto's S3 API, in "
                  "memory)", flush=True)
        print(f"starting the mock warehouse ({settings.rows} rows per table) ...", flush=True)
        warehouse.start("/healthz", timeout=300, env=env)
        started.append(warehouse)
        print(f"  warehouse: {warehouse_url}  (token {settings.warehouse_token})", flush=True)
        catalog.start("/healthz", timeout=60, env=env)
        started.append(catalog)
        print(f"  catalog:   {catalog_url}/docs  (token {settings.catalog_token})", flush=True)
        seed_relational_sources(settings)
        print("starting Dagster (webserver + daemon) ...", flush=True)
        dagster_env = {**env, "PYTHONUNBUFFERED": "1"}
        webserver.start("/server_info", timeout=180, env=dagster_env)
        started.append(webserver)
        ids: list[str] = []
        backfill_started = time.perf_counter()
        if settings.backfill_days > 0:
            ids = launch_backfills(dagster_url, settings.backfill_days)
        daemon.start(None, env=dagster_env)  # (no port of its own: the webserver's answers)
        started.append(daemon)
        print(f"  Dagster UI: {dagster_url}", flush=True)
        print(f"logs in {logs}; Ctrl-C stops everything.", flush=True)
        if settings.drop_interval > 0:
            dropper = start_csv_drops(home / "landing", settings.drop_interval)
        if settings.push_interval > 0:
            ingest, pusher = start_push(settings, env, logs)
            if ingest is not None:
                started.append(ingest)
        if ids:
            print(f"ingesting the last {settings.backfill_days} days of every data type (one "
                  f"range run each): watch {dagster_url}/overview/backfills ; items land in "
                  f"{catalog_url}/api/v1/stats", flush=True)
            wait_for_backfills(dagster_url, catalog_url, settings.catalog_token, ids,
                               backfill_started)
        while all(p.popen and p.popen.poll() is None for p in started):
            time.sleep(1)
        dead = next(p for p in started if p.popen and p.popen.poll() is not None)
        print(f"{dead.args[0]} exited; see {dead.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        if dropper is not None:
            dropper.stop()
        if pusher is not None:
            pusher.stop()
        for proc in reversed([*([s3] if s3 else []), warehouse, catalog, webserver, daemon,
                              *([ingest] if ingest else [])]):
            proc.stop(timeout=20)
