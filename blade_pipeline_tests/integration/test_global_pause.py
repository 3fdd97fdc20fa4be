"""Global pause of new work: the concurrency pool `blade` set to 0 holds BLADE steps."""

import threading

import dagster as dg

from blade_pipeline.assets import POOL

CALLS: list[str] = []


@dg.asset(pool=POOL)
def pooled_probe() -> None:
    CALLS.append("ran")


def test_pool_at_zero_holds_steps_until_reopened(dagster_instance):
    dagster_instance.event_log_storage.set_concurrency_slots(POOL, 0)
    done = threading.Event()
    results = []

    def run():
        results.append(dg.materialize([pooled_probe], instance=dagster_instance))
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        assert not done.wait(6), "a BLADE step ran while the pool was closed"
        assert CALLS == []
        dagster_instance.event_log_storage.set_concurrency_slots(POOL, 2)  # resume
        assert done.wait(60)
        assert results[0].success and CALLS == ["ran"]
    finally:
        dagster_instance.event_log_storage.set_concurrency_slots(POOL, 4)
