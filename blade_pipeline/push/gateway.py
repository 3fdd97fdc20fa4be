"""The one publish path of the ingest API: authorize, check, encode and log a batch.

HTTP (``POST /v1/ingest/{source}``), the WebSocket (``/v1/ws/{source}``) and Arrow Flight
(``do_put``) differ only in how a batch arrives; each hands it here, so the rules (who may
write what, what a batch must hold, when it is acknowledged) and the metrics are the same.
"""

from __future__ import annotations

import logging
import re
import time

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.concurrency import run_in_threadpool

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.push.auth import AuthError, Principal, TokenVerifier
from blade_pipeline.push.log import BatchTooLargeError, IngestLog, LogUnavailableError, Stored
from blade_pipeline.push.records import BadBatch, to_log_payload

LOG = logging.getLogger("blade.ingest")
BATCH_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Refused(Exception):
    """A refused call or batch: an HTTP-like ``status``, a metrics ``reason``, a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Metrics:
    """The server's Prometheus metrics (a registry of its own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter("blade_ingest_records", "Acknowledged records (duplicates and "
                               "refused batches not counted)", ["source", "tenant"],
                               registry=self.registry)
        self.refused = Counter("blade_ingest_refused_batches", "Refused batches by reason",
                               ["reason"], registry=self.registry)
        self.bytes = Counter("blade_ingest_body_bytes", "Bytes of accepted batches as received",
                             ["source"], registry=self.registry)
        self.drain_lag = Gauge("blade_ingest_drain_lag_batches",
                               "Batches in the log not drained into the lake yet", ["source"],
                               registry=self.registry)
        self.ack_latency = Histogram(
            "blade_ingest_ack_latency_seconds", "Batch received -> stored in the log",
            registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))


class Gateway:
    """What every endpoint shares: the push sources, the token verifier, the log, metrics."""

    def __init__(self, sources: list[BladeSource], verifier: TokenVerifier,
                 log: IngestLog) -> None:
        self.endpoints = {s.name: s for s in sources if s.kind == "push" and s.enabled}
        self.verifier, self.log, self.metrics = verifier, log, Metrics()

    def authorize(self, authorization: str | None, name: str) -> tuple[Principal, BladeSource]:
        """The caller and the push source it may write (401, 403 or 404 otherwise)."""
        try:
            principal = self.verifier.verify(authorization)
            principal.require(name)
        except AuthError as exc:
            raise Refused(exc.status, "unauthorized" if exc.status == 401 else "forbidden",
                          exc.reason) from None
        source = self.endpoints.get(name)
        if source is None or source.push is None:
            raise Refused(404, "unknown_source", f"no push source {name!r} (push sources: "
                                                 f"{', '.join(sorted(self.endpoints)) or 'none'})")
        return principal, source

    @staticmethod
    def check_batch_id(batch_id: str) -> str:
        if not BATCH_ID.match(batch_id):
            raise Refused(400, "no_batch_id", "a batch id (Idempotency-Key: 1-128 of A-Z a-z "
                                              "0-9 . _ : -) is required")
        return batch_id

    async def publish(self, principal: Principal, source: BladeSource, batch_id: str,
                      table: pa.Table, received_bytes: int, started: float) -> Stored:
        """Log one parsed batch; return once the log stored it (:class:`Refused` otherwise)."""
        self.check_batch_id(batch_id)
        watermark = table.column(source.watermark_column)
        if watermark.null_count:
            first = watermark.is_null().to_pylist().index(True) + 1
            raise Refused(400, "bad_records", f"[{source.name}] batch {batch_id}: record "
                                              f"{first}: field {source.watermark_column!r} is "
                                              "missing (the watermark places a record in its day)")
        payload = await run_in_threadpool(to_log_payload, table)
        try:
            stored = await self.log.publish(principal.tenant, source.name, batch_id, payload,
                                            table.num_rows)
        except BatchTooLargeError as exc:
            raise Refused(413, "too_large", str(exc)) from None
        except LogUnavailableError as exc:
            raise Refused(503, "log_unavailable", str(exc)) from None
        if not stored.duplicate:
            self.metrics.records.labels(source.name, principal.tenant).inc(table.num_rows)
            self.metrics.bytes.labels(source.name).inc(received_bytes)
        self.metrics.ack_latency.observe(time.perf_counter() - started)
        return stored

    async def parse(self, parser, body: bytes, source: BladeSource, batch_id: str) -> pa.Table:
        """Run a body parser off the event loop; a bad body is a 400 naming the batch."""
        try:
            return await run_in_threadpool(parser, body, source.push)
        except BadBatch as exc:
            raise Refused(400, "bad_records",
                          f"[{source.name}] batch {batch_id}: {exc}") from None

    def refused(self, name: str, refused: Refused) -> None:
        self.metrics.refused.labels(refused.reason).inc()
        LOG.info("refused a batch for %s: %s %s", name, refused.status, refused.message)
