"""Steps on Celery workers (``BLADE_EXECUTOR=celery``, dagster-celery on the machine's RabbitMQ),
with the lake on the loopback S3 API and the Dagster instance on PostgreSQL: what two machines
would share.

* two workers run the partition jobs of every data type (each job its own run worker process,
  all at once) and the catalog ends exact;
* the worker running a catalog step is ``kill -9``-ed mid-upload (its whole process group: a
  lost machine): RabbitMQ hands the unacknowledged step to the other worker, which resumes the
  upload from the day's checkpoint; the run succeeds, the catalog is exact (0 lost, 0 twice);
* the catalog dies mid-upload: the run fails naming it; re-executed from failure on the
  workers once the catalog is back, only the catalog step runs again and the catalog is exact.

``make test-extended`` (CI runs it after ``make test``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from blade_pipeline.config.sources import default_sources, source_for
from blade_pipeline.devservices.processes import ServerProcess
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, REPO_ROOT, WAREHOUSE_TOKEN, make_bucket
from blade_pipeline_tests.conftest import warehouse_url as url_of
from blade_pipeline_tests.faults.conftest import (
    DAY,
    RANGE,
    ROWS,
    WAREHOUSE_ARGS,
    assert_exact,
    expected_ids,
    make_resources,
    stored_items,
)

pytestmark = [pytest.mark.slow, pytest.mark.extended]

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
CELERY = [sys.executable, "-m", "celery", "-A", "blade_pipeline.ops.celery_app"]


@dataclass
class Worker:
    name: str
    popen: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """kill -9 the worker and its pool child, as a lost machine would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)


@dataclass
class Cluster:
    """Two Celery workers and the environment every process of the 'deployment' shares."""

    env: dict[str, str]
    workers: list[Worker]
    res: dict
    catalog: ServerProcess
    logs: Path

    def run(self, *args: str, name: str) -> subprocess.Popen:
        """A run worker process (``celery_runs``), its output in ``<logs>/<name>.log``."""
        out = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "blade_pipeline_tests.scaleout.celery_runs",
                                 *args], env=self.env, cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT)

    def outcome(self, proc: subprocess.Popen, name: str, timeout: float = 300) -> dict:
        proc.wait(timeout)
        text = (self.logs / f"{name}.log").read_text()
        lines = [line for line in text.splitlines() if line.startswith('{"run_id"')]
        assert lines, f"run {name} printed no outcome:\n{text[-4000:]}"
        return json.loads(lines[-1])


def start_worker(name: str, env: dict[str, str], logs: Path) -> Worker:
    log = logs / f"{name}.log"
    out = log.open("ab")
    popen = subprocess.Popen([*CELERY, "worker", "-Q", "dagster", "--concurrency", "1",
                              "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
                              "-l", "INFO"], env=env, cwd=REPO_ROOT, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(name, popen, log)


def wait_ready(workers: list[Worker], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        while " ready." not in worker.log.read_text():
            assert worker.popen.poll() is None, worker.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{worker.name} not ready after {timeout}s"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(start_warehouse, start_catalog, pg_dagster_home, pg_url, s3_server,
            tmp_path_factory) -> Iterator[Cluster]:
    warehouse = start_warehouse(ROWS, *WAREHOUSE_ARGS)
    catalog = start_catalog("--latency-ms", "300")
    lake_uri = make_bucket(s3_server, "blade-celery") + "/lake"
    logs = tmp_path_factory.mktemp("celery")
    env = {**os.environ, "DAGSTER_HOME": str(pg_dagster_home), "DAGSTER_PG_URL": pg_url,
           "BLADE_EXECUTOR": "celery", "BLADE_CELERY_BROKER_URL": BROKER,
           "BLADE_WAREHOUSE_URL": url_of(warehouse), "DATABRICKS_TOKEN": WAREHOUSE_TOKEN,
           "BLADE_CATALOG_URL": catalog.base_url, "BLADE_CATALOG_TOKEN": CATALOG_TOKEN,
           "BLADE_LAKE_URI": lake_uri, "BLADE_S3_ENDPOINT": s3_server.base_url,
           "BLADE_CATALOG_BATCH_SIZE": "50", "BLADE_CATALOG_PARALLEL_UPLOADS": "1",
           "PYTHONPATH": str(REPO_ROOT)}
    # steps a crashed earlier session left on the queue would reach these workers
    subprocess.run([*CELERY, "purge", "-f", "-Q", "dagster"], env=env, cwd=REPO_ROOT,
                   capture_output=True, timeout=60, check=False)
    workers = [start_worker(name, env, logs) for name in ("w1", "w2")]
    try:
        wait_ready(workers)
        res = make_resources(warehouse, catalog, "unused")
        res["lake"] = ParquetLake(uri=lake_uri, s3_endpoint=s3_server.base_url)
        yield Cluster(env, workers, res, catalog, logs)  # tests replace workers in this list
    finally:
        catalog.stop()  # a test may have replaced the fixture's (restarted on its port)
        for worker in workers:
            if worker.popen.poll() is None:
                os.killpg(worker.popen.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.popen.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """step key -> the Celery workers that started it, from the run's engine events."""
    found: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        data = event.engine_event_data.metadata if event and event.engine_event_data else {}
        if "Celery worker" in data:
            found.setdefault(event.step_key or "", []).append(data["Celery worker"].value)
    return found


@pytest.fixture(scope="module")
def every_type_on_day(cluster) -> dict[str, dict]:
    """The partition job of every data type for DAY, all at once, each its own run worker
    process: data type -> outcome. (The later tests' catalogs hold these days too.)"""
    runs = {s.data_type: cluster.run("execute", f"blade_{s.data_type}_job", DAY,
                                     name=f"all-{s.data_type}") for s in default_sources()
            if s.kind == "databricks"}
    return {data_type: cluster.outcome(proc, f"all-{data_type}")
            for data_type, proc in runs.items()}


def test_two_workers_run_every_data_type_and_the_catalog_ends_exact(
        cluster, every_type_on_day, dagster_instance, reference_db):
    used: set[str] = set()
    for data_type, outcome in every_type_on_day.items():
        assert outcome["success"], (cluster.logs / f"all-{data_type}.log").read_text()[-3000:]
        where = step_workers(dagster_instance, outcome["run_id"])
        assert {k.rsplit("__", 1)[-1] for k in where} >= {"staged", "catalog"}
        used |= {w.split("@")[0] for hosts in where.values() for w in hosts}
        assert_exact(cluster.res, reference_db, data_type)
    assert used == {"w1", "w2"}, f"steps ran on {used} only"


def test_a_worker_killed_mid_upload_hands_the_step_to_the_other_and_the_catalog_ends_exact(
        cluster, every_type_on_day, dagster_instance, reference_db):
    source, day = source_for("sortie"), RANGE[0]
    before = stored_items(cluster.catalog)
    proc = cluster.run("execute", f"blade_{source.data_type}_job", day, name="kill")
    catalog_step = f"blade__{source.data_type}__catalog"
    victim, deadline = None, time.monotonic() + 180
    while victim is None:  # the worker that took the catalog step, once it has uploaded some
        assert time.monotonic() < deadline and proc.poll() is None, "no upload to interrupt"
        run_ids = [r.run_id for r in dagster_instance.get_runs(
            dg.RunsFilter(job_name=f"blade_{source.data_type}_job", tags={
                "dagster/partition": day}))]
        hosts = step_workers(dagster_instance, run_ids[0]).get(catalog_step) if run_ids else None
        if hosts and stored_items(cluster.catalog) - before >= 100:
            victim = next(w for w in cluster.workers if hosts[0].startswith(f"{w.name}@"))
        time.sleep(0.05)
    uploaded_at_kill = stored_items(cluster.catalog) - before
    victim.kill()
    outcome = cluster.outcome(proc, "kill")
    assert outcome["success"], (cluster.logs / "kill.log").read_text()[-3000:]
    [other] = [w for w in cluster.workers if w is not victim]
    hosts = step_workers(dagster_instance, outcome["run_id"])[catalog_step]
    assert [h.split("@")[0] for h in hosts] == [victim.name, other.name], hosts
    logs = " ".join(str(r.user_message) for r in dagster_instance.all_logs(outcome["run_id"]))
    assert "already acknowledged" in logs, "the second worker did not resume from the checkpoint"
    # the catalog also holds the type's DAY from the first test: both days exact
    assert_exact(cluster.res, reference_db, source.data_type, days=[day, DAY])
    assert 100 <= uploaded_at_kill < len(expected_ids(reference_db, source.data_type, day))
    # the dead worker is replaced, as an operator (or systemd, or k8s) would
    cluster.workers[cluster.workers.index(victim)] = replacement = start_worker(
        victim.name, cluster.env, cluster.logs)
    wait_ready([replacement])


def test_a_run_failed_on_the_workers_is_reexecuted_from_failure_and_ends_exact(
        cluster, every_type_on_day, dagster_instance, reference_db):
    source, day = source_for("supply"), RANGE[1]
    before = stored_items(cluster.catalog)
    proc = cluster.run("execute", f"blade_{source.data_type}_job", day, name="fail")
    deadline = time.monotonic() + 180
    while stored_items(cluster.catalog) - before < 100:
        assert time.monotonic() < deadline and proc.poll() is None, "no upload to interrupt"
        time.sleep(0.05)
    cluster.catalog.kill()
    failed = cluster.outcome(proc, "fail")
    assert not failed["success"]
    [failure] = [r.dagster_event.event_specific_data.error.message for r in
                 dagster_instance.all_logs(failed["run_id"],
                                           of_type=dg.DagsterEventType.STEP_FAILURE)]
    assert f"[{source.data_type}]" in failure and cluster.catalog.base_url in failure
    restarted = ServerProcess(cluster.catalog.args, cluster.catalog.port,
                              cluster.catalog.log_path)
    restarted.start("/healthz", timeout=60)
    cluster.catalog.popen = restarted.popen  # stopped with the cluster
    again = cluster.outcome(cluster.run("reexecute", failed["run_id"], name="reexecute"),
                            "reexecute")
    assert again["success"], (cluster.logs / "reexecute.log").read_text()[-3000:]
    assert set(step_workers(dagster_instance, again["run_id"])) == {  # the failed step and
        f"blade__{source.data_type}__catalog",  # the checks after it; staging is not redone
        f"blade__{source.data_type}__catalog_reconciled", f"{source.data_type}_freshness"}
    assert_exact(cluster.res, reference_db, source.data_type, days=[day, DAY])
