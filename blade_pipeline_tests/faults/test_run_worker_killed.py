"""Case 6: the run's own process is killed with ``kill -9`` mid-upload.

A ``dagster-daemon`` on the PostgreSQL instance runs the queue, run monitoring and run retries;
the run is submitted with ``dagster job launch`` (as the UI would) and executes in a run worker
process of the daemon's code server
(:class:`~blade_pipeline.ops.run_launcher.LocalProcessRunLauncher`).

* worker killed: the code server sees its child die, or run monitoring finds the worker's
  process gone, whichever polls first, and the run is failed;
* worker and code server killed (OOM killer, crash): nothing is left to notice but run
  monitoring, which finds the worker's process gone through the launcher's health check.

Either way run retries re-execute the run from failure and the upload resumes after its last
acknowledged batch. End state: the catalog holds exactly the staged items, each at version 1.
The daemon's run failure sensor posts one alert for the killed run to a webhook receiver.
The worker case runs as a range run (three days in one run, checkpoints per day: a one-day run
is the same path with one checkpoint), the worker + code server case as a one-day run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from blade_pipeline.ops.run_launcher import run_worker_started
from blade_pipeline_tests.alert_sinks import Receiver
from blade_pipeline_tests.conftest import (
    CATALOG_TOKEN,
    END_DATE,
    REPO_ROOT,
    WAREHOUSE_TOKEN,
    warehouse_url,
)
from blade_pipeline_tests.faults.conftest import make_resources, staged_hashes
from blade_pipeline_tests.postgres import fresh_pg_database, pg_answers
from blade_pipeline_tests.servers import stored_items

pytestmark = [pytest.mark.slow, pytest.mark.extended]

DAY = (END_DATE - dt.timedelta(days=1)).isoformat()
RANGE = [(END_DATE - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1)]
ROWS = 60_000
BIN = Path(sys.executable).parent


def wait_for(what: str, check, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def daemon_instance(tmp_path) -> Iterator[tuple[dg.DagsterInstance, Path, str]]:
    """(instance, DAGSTER_HOME, PostgreSQL URL) on a database of its own (a daemon ticks
    sensors and keeps cursors: it must not share them with other tests), with the repository's
    instance config, run monitoring polling every 2 s."""
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    home = tmp_path / "dagster_home"
    home.mkdir()
    text = (REPO_ROOT / "dagster.yaml").read_text()
    assert "poll_interval_seconds: 15" in text
    (home / "dagster.yaml").write_text(text.replace("poll_interval_seconds: 15",
                                                    "poll_interval_seconds: 2"))
    with fresh_pg_database("blade_case6") as pg_url:
        previous = os.environ.get("DAGSTER_PG_URL")
        os.environ["DAGSTER_PG_URL"] = pg_url
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield instance, home, pg_url
        finally:
            if previous is not None:
                os.environ["DAGSTER_PG_URL"] = previous


def stop(daemon: subprocess.Popen) -> None:
    """Stop the daemon, then whatever it started (its code server and run workers)."""
    daemon.send_signal(signal.SIGINT)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)


def partition_tags(days: list[str]) -> dict[str, str]:
    if len(days) == 1:
        return {"dagster/partition": days[0]}
    return {"dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1]}


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize(("also_code_server", "days"), [(True, [DAY]), (False, RANGE)],
                         ids=["worker+code-server", "worker-range-run"])
def test_6_run_worker_killed_mid_upload_is_failed_retried_and_ends_exact(
        also_code_server, days, start_warehouse, start_catalog, tmp_path, daemon_instance):
    dagster_instance, daemon_home, pg_url = daemon_instance
    warehouse = start_warehouse(ROWS, "--days", str(len(days)))
    catalog = start_catalog("--latency-ms", "200")
    res = make_resources(warehouse, catalog, tmp_path / "lake")
    receiver = Receiver()
    env = {**os.environ, "DAGSTER_HOME": str(daemon_home), "DAGSTER_PG_URL": pg_url,
           "BLADE_WAREHOUSE_URL": warehouse_url(warehouse), "DATABRICKS_TOKEN": WAREHOUSE_TOKEN,
           "BLADE_CATALOG_URL": catalog.base_url, "BLADE_CATALOG_TOKEN": CATALOG_TOKEN,
           "BLADE_LAKE_URI": str(tmp_path / "lake"), "BLADE_CATALOG_BATCH_SIZE": "2000",
           "BLADE_SENSOR_INTERVAL_SECONDS": "3600", "BLADE_ALERT_INTERVAL_SECONDS": "2",
           "BLADE_ALERT_WEBHOOK_URL": receiver.url}
    workspace = str(REPO_ROOT / "workspace.yaml")

    def start_daemon() -> subprocess.Popen:
        with (tmp_path / "daemon.log").open("ab") as log:
            return subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", workspace],
                                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                    start_new_session=True)  # its own process group

    daemon = start_daemon()
    try:
        subprocess.run([str(BIN / "dagster"), "job", "launch", "-w", workspace,
                        "-j", "blade_maintenance_job", "--tags",
                        json.dumps({**partition_tags(days), "blade/case": tmp_path.name})],
                       env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
        [run] = dagster_instance.get_runs(dg.RunsFilter(tags={"blade/case": tmp_path.name}))
        def saved() -> list[dict]:
            return [res["lake"].read_json(res["lake"].checkpoint_path("maintenance", day))
                    or {"acknowledged": [], "processed": 0, "total": 1} for day in days]

        wait_for("three acknowledged batches", lambda: sum(
            len(s["acknowledged"]) for s in saved()) >= 3, 240)
        started = run_worker_started(dagster_instance, run.run_id)
        assert started, "no 'Started process for run' event"
        pid, _ = started
        code_server = parent_pid(pid)
        assert b"grpc" in Path(f"/proc/{code_server}/cmdline").read_bytes()
        if also_code_server:
            # The host loses the daemon too (an OOM kill, a reboot): with the daemon alive, its
            # run-retry consumer can meet the failure while the code server is gone, and
            # Dagster does not try that retry again (DagsterUserCodeUnreachableError).
            stop(daemon)
        os.kill(pid, signal.SIGKILL)
        if also_code_server:  # nothing is left to notice the dead worker but run monitoring
            os.kill(code_server, signal.SIGKILL)
        killed_at = saved()
        assert any(s["processed"] < s["total"] for s in killed_at), "the upload finished too fast"
        if also_code_server:  # the restarted daemon's run monitoring finds the worker gone
            daemon = start_daemon()

        failed = wait_for("the run to be failed", lambda: (
            r := dagster_instance.get_run_by_id(run.run_id)).is_finished and r, 120)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        try:  # a restarted daemon starts its code server and run-retry consumer first
            retry = wait_for("the automatic retry", lambda: dagster_instance.get_runs(
                dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id})), 180)[0]
        except AssertionError:
            raise AssertionError("no automatic retry; the daemon's log ends with:\n"
                                 + (tmp_path / "daemon.log").read_text()[-3000:]) from None
        assert retry.tags.get("dagster/retry_strategy", "FROM_FAILURE") == "FROM_FAILURE"
        done = wait_for("the retry to finish", lambda: (
            r := dagster_instance.get_run_by_id(retry.run_id)).is_finished and r, 240)
        assert done.status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()
        alerts = wait_for("the killed run's alert", lambda: [
            b for b in receiver.bodies if b["run_id"] == run.run_id], 60)
        assert len(alerts) == 1, alerts
        [alert] = alerts
    finally:
        stop(daemon)
        receiver.close()
    assert (alert["kind"], alert["data_type"]) == ("run_failure", "maintenance")
    assert alert["days"] == (days[0] if len(days) == 1 else f"{days[0]}...{days[-1]}")
    assert "process" in alert["cause"], alert  # the worker's death, as Dagster reported it
    assert "retried automatically" in alert["title"] and "run retries" in alert["action"]
    # one alert for the killed run, none for its retry (it succeeded); other runs of the
    # daemon (e.g. a freshness check's run cut off by the kill) may alert on their own
    alerted = [b["run_id"] for b in receiver.bodies]
    assert alerted.count(run.run_id) == 1 and retry.run_id not in alerted

    messages = [f"{e.user_message} {e.dagster_event.message if e.dagster_event else ''}"
                for e in dagster_instance.all_logs(run.run_id)]
    by_monitoring = f"run worker process {pid} is gone"  # our launcher's health check
    by_code_server = f"Run execution process for {run.run_id}"  # Dagster's orphan check
    noticed = [m for m in messages if by_monitoring in m or by_code_server in m]
    assert noticed, messages[-5:]
    if also_code_server:  # no code server left: only run monitoring can have noticed
        assert any(by_monitoring in m for m in noticed), noticed
    resumed = [m for m in dagster_instance.all_logs(retry.run_id)
               if "resuming" in (m.user_message or "")]
    assert resumed, "the retry did not resume from the checkpoint"
    staged = {k: v for day in days for k, v in staged_hashes(res["lake"], "maintenance",
                                                              day).items()}
    items = stored_items(catalog, "BLADE:maintenance")  # 60 pages x 200 ms otherwise
    assert len(items) == len({i["item_id"] for i in items}) == len(staged)
    assert {i["item_id"]: i["content_hash"] for i in items} == staged
    assert {i["version"] for i in items} == {1}
