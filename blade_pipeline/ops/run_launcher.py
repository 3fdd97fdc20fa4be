"""A run launcher whose run workers Dagster's run monitoring can health-check.

Dagster's ``DefaultRunLauncher`` starts each run in a process of the code server but cannot tell
the daemon whether that process still lives: a run worker killed with ``kill -9`` (OOM killer,
a reboot of the host) leaves its run ``STARTED`` forever. :class:`LocalProcessRunLauncher` adds
``check_run_worker_health``: the worker's pid comes from the run's own "Started process for run"
event, and the process is looked up on this host. With ``run_monitoring`` enabled the daemon
then marks such a run failed, and ``run_retries`` re-executes it from failure (the upload
resumes from its checkpoint). Only code servers on this host are checked; for a remote code
server the worker is reported running (the daemon cannot see its processes).
"""

from __future__ import annotations

import socket

import psutil
from dagster import DagsterEventType, DagsterInstance, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

STARTED_PROCESS = "Started process for run (pid: "
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname()}


class LocalProcessRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` + run worker health checks for run monitoring (same host)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not _local_code_server(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "code server on another host")
        started = run_worker_started(self._instance, run.run_id)
        if started is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker started yet")
        pid, since = started
        if process_alive(pid, since):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed) while "
            "the run was still STARTED", run_worker_id=str(pid))


def run_worker_started(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, unix time) of the newest "Started process for run" engine event of the run."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=1000).records
    for record in records:
        entry = record.event_log_entry
        message = (entry.dagster_event.message if entry.dagster_event else None) or ""
        if message.startswith(STARTED_PROCESS):
            pid = int(message[len(STARTED_PROCESS):].split(")")[0])
            return pid, record.event_log_entry.timestamp
    return None


def process_alive(pid: int, started_by: float) -> bool:
    """Whether ``pid`` is a live (not zombie) process that started by ``started_by`` (a later
    start means the pid was reused)."""
    try:
        process = psutil.Process(pid)
        status, created = process.status(), process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else: cannot be ours, but alive
        return True
    return status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) and \
        created <= started_by + 2.0


def _local_code_server(run: DagsterRun) -> bool:
    origin = run.remote_job_origin
    if origin is None:
        return True
    location = origin.repository_origin.code_location_origin
    host = getattr(location, "host", None)
    return host is None or host in _LOCAL_HOSTS
