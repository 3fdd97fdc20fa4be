"""Run worker health checks of LocalProcessRunLauncher (real processes, fake event log)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
from dagster._core.launcher.base import WorkerStatus

from blade_pipeline.ops.run_launcher import LocalProcessRunLauncher, process_alive


class FakeInstance:
    """Answers ``get_records_for_run`` with given engine event messages (newest first)."""

    def __init__(self, *messages: tuple[str, float]) -> None:
        self.records = [SimpleNamespace(event_log_entry=SimpleNamespace(
            user_message="", dagster_event=SimpleNamespace(message=message), timestamp=stamp))
            for message, stamp in messages]

    def get_records_for_run(self, run_id, of_type, ascending, limit):
        return SimpleNamespace(records=self.records)


def health(*messages: tuple[str, float]) -> tuple[WorkerStatus, str | None]:
    launcher, instance = LocalProcessRunLauncher(), FakeInstance(*messages)
    launcher.register_instance(instance)  # type: ignore[arg-type]
    run = SimpleNamespace(run_id="r1", remote_job_origin=None)
    result = launcher.check_run_worker_health(run)  # type: ignore[arg-type]
    return result.status, result.msg


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_worker_is_running(sleeper):
    status, _ = health((f"Started process for run (pid: {sleeper.pid}).", time.time()))
    assert status == WorkerStatus.RUNNING


def test_a_killed_worker_is_failed_even_before_it_is_reaped(sleeper):
    os.kill(sleeper.pid, signal.SIGKILL)
    time.sleep(0.3)  # a zombie now: its parent (this test) has not waited for it
    assert not process_alive(sleeper.pid, time.time())
    status, msg = health(("Some other engine event", time.time()),
                         (f"Started process for run (pid: {sleeper.pid}).", time.time()))
    assert status == WorkerStatus.FAILED and f"process {sleeper.pid} is gone" in (msg or "")


def test_a_reused_pid_does_not_count_as_the_worker(sleeper):
    hour_ago = time.time() - 3600  # the event predates the process holding the pid now
    status, _ = health((f"Started process for run (pid: {sleeper.pid}).", hour_ago))
    assert status == WorkerStatus.FAILED


def test_a_run_without_a_worker_event_is_left_alone():
    assert health(("Launching run", time.time()))[0] == WorkerStatus.RUNNING
