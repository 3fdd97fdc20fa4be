"""Where a run's steps execute: ``BLADE_EXECUTOR`` = ``in_process`` | ``multiprocess`` |
``celery``.

* ``in_process`` (default): every step in the run's own process. A partition's steps run in
  sequence anyway (staged -> checks -> catalog), and this saves a Python start-up per step;
  scale out with more concurrent runs (the QueuedRunCoordinator of dagster.yaml).
* ``multiprocess``: each step in a child process of the run worker (Dagster's default).
* ``celery``: each step as a task on Celery workers (``dagster-celery``) through the broker at
  ``BLADE_CELERY_BROKER_URL``, read by the executor from the environment (``{"env": ...}``:
  never in run config). Workers on any machine that shares the Dagster instance
  (PostgreSQL), the lake (``s3://``) and the catalog run them: see docs/scale-out.md, "Running on
  more than one machine" and ``blade celery-worker``.
"""

from __future__ import annotations

import dagster as dg

from blade_pipeline.config.settings import DEMO_CELERY_BROKER_URL, BladeSettings

#: The queue the workers of ``blade celery-worker`` consume (dagster-celery's default).
CELERY_QUEUE = "dagster"
#: One result backend over the broker itself: no extra service. Results are small (a step's
#: events go to the instance, not through Celery).
CELERY_BACKEND = "rpc://"
#: Celery settings of the executor's app and the workers' (``blade_pipeline.ops.celery_app``).
CELERY_CONFIG = {
    # a worker takes one step at a time: a dead worker holds only the step it ran
    "worker_prefetch_multiplier": 1,
    # A step is acknowledged when it ends, not when a worker takes it: if the worker dies
    # (kill -9, a lost machine) RabbitMQ hands the step to another worker, which runs it again
    # (our steps are idempotent: staging replaces a day atomically, the upload resumes from
    # its checkpoint). With dagster-celery's default (ack on receipt) the step is lost and the
    # run waits for it forever: its executor has no step timeout.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,  # also when only the pool child dies (OOM killer)
    # a frozen worker (its TCP connection open) is given up after ~2 heartbeats, not ~2 min
    "broker_heartbeat": 10,
    "broker_connection_retry_on_startup": True,
}

def executor_from_env(settings: BladeSettings | None = None) -> dg.ExecutorDefinition:
    """The executor ``BLADE_EXECUTOR`` names (``in_process`` when unset)."""
    settings = settings or BladeSettings.load()
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    if settings.executor == "celery":
        return celery_executor(settings)
    return dg.in_process_executor


def celery_executor(settings: BladeSettings) -> dg.ExecutorDefinition:
    """dagster-celery's executor on the broker of ``BLADE_CELERY_BROKER_URL`` (or the demo's
    RabbitMQ)."""
    try:
        from dagster_celery import celery_executor as dagster_celery_executor
    except ImportError as exc:  # pragma: no cover - the extra is part of make setup
        raise ImportError("BLADE_EXECUTOR=celery needs dagster-celery: pip install "
                          "'blade-pipeline[celery]'") from exc
    broker = ({"env": "BLADE_CELERY_BROKER_URL"} if settings.celery_broker_url
              else DEMO_CELERY_BROKER_URL)
    return dagster_celery_executor.configured(
        {"broker": broker, "backend": CELERY_BACKEND, "config_source": CELERY_CONFIG},
        name="blade_celery_executor")
