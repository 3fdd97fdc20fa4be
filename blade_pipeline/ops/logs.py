"""Structured logs: with ``BLADE_LOG_FORMAT=json`` every log record of every run on the
instance (the pipeline's own lines and Dagster's events) is also written to stderr as one JSON
object, for log shippers, with the correlation ids a reader filters on: ``run_id``, ``job``,
``step``, ``data_type`` and ``partition`` (a day, or ``first...last`` for a range run), beside
``ts``, ``level``, ``message`` and, for Dagster's structured events, ``event`` (e.g.
``STEP_FAILURE``). Unset or ``text``: nothing is added.

It is an instance-wide handler (``python_logs.dagster_handler_config`` in ``dagster.yaml``), so
it covers runs launched from anywhere: the UI, sensors, schedules, backfills. (A job logger
would need every run's config to name it: Dagster falls back to its console logger otherwise.
And Dagster's own ``json_console_logger`` dumps the whole ``LogRecord``, some 25 fields with the
ids nested and no data type; this formatter writes the few a shipper indexes.)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any

from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from blade_pipeline.config.settings import BladeSettings


def data_type_of(step: str | None, job: str | None) -> str | None:
    """``blade__<type>__...`` step keys and ``blade_<type>_job`` job names name the type."""
    if step and step.startswith("blade__"):
        return step.split("__")[1]
    if job and job.startswith("blade_") and job.endswith("_job"):
        name = job[len("blade_"):-len("_job")]
        return None if name in {"query", "item"} else name
    return None


def _partition(tags: dict[str, str]) -> str | None:
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        first, last = tags[ASSET_PARTITION_RANGE_START_TAG], tags.get(
            ASSET_PARTITION_RANGE_END_TAG)
        return f"{first}...{last}"
    return None


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, correlation ids first."""

    def format(self, record: logging.LogRecord) -> str:
        meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
        tags = meta.get("job_tags") or {}
        step, job = meta.get("step_key"), meta.get("job_name")
        event = meta.get("dagster_event")
        doc = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "run_id": meta.get("run_id"), "job": job,
            "step": step, "data_type": data_type_of(step, job), "partition": _partition(tags),
            "event": getattr(event, "event_type_value", None),
            "message": meta.get("orig_message", record.getMessage()),
        }
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None:  # a step or run failure: its cause, as the UI shows it
            doc["error"] = error.message.strip()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in doc.items() if v is not None}, default=str)


class JsonLinesHandler(logging.Handler):
    """The instance-wide handler of ``dagster.yaml``'s ``python_logs``: every run's log
    records as JSON lines on stderr (or appended to ``path``, a file a shipper tails) when
    ``BLADE_LOG_FORMAT=json``; nothing otherwise."""

    def __init__(self, path: str | None = None, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.path = path
        self.setFormatter(JsonLineFormatter())
        BladeSettings()  # a malformed BLADE_LOG_FORMAT fails here, naming the variable

    def emit(self, record: logging.LogRecord) -> None:
        # Read per record, not once: Dagster may build this handler before the variable is set
        # and reuse it across instances of one process.
        if os.environ.get("BLADE_LOG_FORMAT", "").strip().lower() != "json":
            return
        try:
            line = self.format(record) + "\n"
            if self.path:
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(line)
            else:
                sys.stderr.write(line)
                sys.stderr.flush()
        except Exception:
            self.handleError(record)
