"""How a step fails: the one-retry-layer rule, the RetryPolicy, the pool, and
Terminate as a pause.

**One retry layer per failure.** A request is retried where it is made: the catalog client
retries each HTTP request (connect errors, timeouts, 429/5xx, honouring ``Retry-After``) and the
Databricks connector each warehouse call (429/503, connection errors), both bounded. When a
resource gives up, the step fails at once (``allow_retries=False``): retrying the step would
repeat the same requests, multiplied. The step's :data:`RETRY_POLICY` retries only what no
request-level retry can recover: a warehouse result stream lost mid-fetch (only running the
query again helps) and unexpected errors. Fatal errors (bad token, bad SQL, lake) never retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from blade_pipeline.config.settings import step_retry_delay_seconds
from blade_pipeline.sources.reader import SourceError, SourceResultLostError
from blade_pipeline.storage.catalog import CatalogError
from blade_pipeline.storage.lake import LakeError

#: What no resource retried: a lost result stream, unexpected errors (see the module doc).
#: Waits ``BLADE_STEP_RETRY_DELAY_SECONDS`` (2 s), then twice as long after each attempt.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=step_retry_delay_seconds(),
                              backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


POOL = "blade"


def step_may_retry(exc: Exception) -> bool:
    """Whether the step's RetryPolicy may retry after ``exc`` (the one-retry-layer rule)."""
    if isinstance(exc, SourceResultLostError):
        return True
    return not isinstance(exc, SourceError | CatalogError | LakeError)


def step_failure(label: str, exc: Exception) -> dg.Failure:
    """A Dagster failure naming what failed (``[maintenance 2024-01-01] ...``)."""
    return dg.Failure(description=f"[{label}] {exc}", allow_retries=step_may_retry(exc))


@contextlib.contextmanager
def paused_on_terminate(label: str) -> Iterator[None]:
    """Terminate (the UI's pause) ends the step for good instead of being retried.

    Dagster re-runs an interrupted step when it has a RetryPolicy (meant for preemption); a
    user's Terminate must stop the run instead, leaving the checkpoint for Re-execute."""
    try:
        yield
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise dg.Failure(description=f"[{label}] terminated: paused between batches with the "
                         "checkpoint saved; Re-execute (from failure) resumes after the last "
                         "acknowledged batch", allow_retries=False) from None
