"""The durable log of pushed batches: a NATS JetStream stream.

One message per batch (a zstd Arrow IPC stream of its records, never a message per record) on
the subject ``<stream>.<tenant>.<source>`` (the stream owns ``<stream>.>``); the batch id (the
client's ``Idempotency-Key``) is the message's ``Nats-Msg-Id``, so JetStream stores a retried
batch once within the stream's duplicate window (``BLADE_INGEST_DEDUPE_WINDOW_SECONDS``, 1 hour
by default) and answers the retry with the first copy's sequence. A publish returns only when
JetStream has stored the message (its PubAck): with nats-server 2.9 that is a write to the OS
page cache (a kill -9 of the server loses nothing, a power loss may), with >= 2.10 and
``sync_interval: always`` an fsync.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors


class LogUnavailableError(Exception):
    """The log could not store a batch (not connected, timed out, refused)."""


class BatchTooLargeError(Exception):
    """A batch bigger than one log message may be (the server's ``max_payload``)."""


@dataclass(frozen=True)
class Stored:
    """Where the log stored a batch."""

    sequence: int
    duplicate: bool  # the batch id was stored before: not stored again


def subject(stream: str, tenant: str, source: str) -> str:
    """The subject of a tenant's batches for a source (tenants are subject-safe names)."""
    return f"{stream}.{tenant}.{source}"


class IngestLog:
    """A connection to the stream, created (or its duplicate window updated) on connect."""

    def __init__(self, url: str, stream: str, dedupe_window_seconds: int,
                 publish_timeout_seconds: float = 10.0) -> None:
        self._url = url
        self.stream = stream
        self._window = dedupe_window_seconds
        self._timeout = publish_timeout_seconds
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def connect(self) -> None:
        """Connect (reconnecting forever in the background after a loss) and make sure the
        stream exists with this duplicate window."""
        self._nc = await nats.connect(self._url, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5, connect_timeout=5,
                                      allow_reconnect=True)
        self._js = self._nc.jetstream(timeout=self._timeout)
        config = js_api.StreamConfig(
            name=self.stream, subjects=[f"{self.stream}.>"],
            storage=js_api.StorageType.FILE, duplicate_window=float(self._window))
        try:
            await self._js.add_stream(config)
        except js_errors.BadRequestError:  # exists with another config: keep it, update it
            await self._js.update_stream(config)

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts (bytes)."""
        return self._nc.max_payload if self._nc is not None else 0

    async def publish(self, tenant: str, source: str, batch_id: str, payload: bytes,
                      records: int) -> Stored:
        """Store one batch; return only once JetStream acknowledged it."""
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise LogUnavailableError("the log (NATS) is not connected")
        if len(payload) > self.max_payload:
            raise BatchTooLargeError(
                f"the batch is {len(payload)} bytes compressed, over the log's message limit "
                f"of {self.max_payload} bytes: send fewer records per batch")
        headers = {"Nats-Msg-Id": f"{tenant}:{source}:{batch_id}", "Blade-Tenant": tenant,
                   "Blade-Source": source, "Blade-Records": str(records)}
        try:
            ack = await self._js.publish(subject(self.stream, tenant, source), payload,
                                         headers=headers, stream=self.stream)
        except (nats.errors.Error, js_errors.Error, TimeoutError) as exc:
            raise LogUnavailableError(f"the log did not store the batch: "
                                      f"{type(exc).__name__}") from None
        return Stored(ack.seq, bool(ack.duplicate))

    async def healthy(self) -> bool:
        """Connected and the stream answers."""
        if self._js is None or self._nc is None or not self._nc.is_connected:
            return False
        try:
            await self._js.stream_info(self.stream)
        except (nats.errors.Error, js_errors.Error, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None
