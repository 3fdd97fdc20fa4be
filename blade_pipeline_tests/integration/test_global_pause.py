"""Global pause of new work: the concurrency pool `blade` set to 0 holds BLADE steps."""

import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from blade_pipeline.defs.assets import POOL
from blade_pipeline_tests.postgres import fresh_pg_database, pg_answers

CALLS: list[str] = []


@dg.asset(pool=POOL)
def pooled_probe() -> None:
    CALLS.append("ran")


@pytest.fixture
def pool_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A PostgreSQL instance of its own: the pool's slots and pending steps are shared by
    every run of a database, so other cases' runs must not be in it."""
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    with fresh_pg_database("blade_pool") as url:
        # no compute-log capture: run in a thread late in the suite, its cleanup of the
        # capture (tail -F processes) was seen to hang 60 s after the step had succeeded
        (tmp_path / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n"
            "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n"
            "  class: NoOpComputeLogManager\n")
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            yield instance


def test_pool_at_zero_holds_steps_until_reopened(pool_instance):
    pool_instance.event_log_storage.set_concurrency_slots(POOL, 0)
    done = threading.Event()
    results = []

    def run():
        results.append(dg.materialize([pooled_probe], instance=pool_instance))
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        assert not done.wait(6), "a BLADE step ran while the pool was closed"
        assert CALLS == []
        pool_instance.event_log_storage.set_concurrency_slots(POOL, 2)  # resume
        assert done.wait(60)
        assert results[0].success and CALLS == ["ran"]
    finally:
        pool_instance.event_log_storage.set_concurrency_slots(POOL, 4)
        worker.join(10)
