"""A Python client of the ingest API: Arrow tables or NDJSON lines to a push source.

Each batch goes with its batch id as ``Idempotency-Key``; a batch whose answer did not arrive
(a dropped connection, a restarting server, 503 while the log is away) is sent again with the
same key until acknowledged or ``deadline_seconds`` pass, so the server stores it once. Refusals
(4xx) are raised as :class:`PushRefused` with the server's message and are not retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc

from blade_pipeline.push.records import ARROW_STREAM, NDJSON

RETRIED_STATUSES = {502, 503, 504}


class PushRefused(RuntimeError):
    """The server refused a batch (4xx): retrying it unchanged cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True)
class Ack:
    """The server's answer to a stored batch."""

    records: int
    sequence: int
    duplicate: bool
    attempts: int = 1


def arrow_body(table: pa.Table) -> bytes:
    """A table as an Arrow IPC stream body."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ndjson_body(records: Iterable[dict]) -> bytes:
    """Records as an NDJSON body (one JSON object per line)."""
    return "".join(json.dumps(r, default=str) + "\n" for r in records).encode()


class PushClient:
    """Batches to ``base_url``'s ingest API with ``token`` (a JWT from the token issuer)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 deadline_seconds: float = 120.0, retry_pause: float = 0.2) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})
        self._deadline, self._pause = deadline_seconds, retry_pause

    def send_arrow(self, source: str, table: pa.Table, batch_id: str) -> Ack:
        return self.send(source, arrow_body(table), ARROW_STREAM, batch_id)

    def send_ndjson(self, source: str, body: bytes, batch_id: str) -> Ack:
        return self.send(source, body, NDJSON, batch_id)

    def send(self, source: str, body: bytes, content_type: str, batch_id: str) -> Ack:
        """One batch, sent again with the same key until the server answers it."""
        deadline, attempts = time.monotonic() + self._deadline, 0
        while True:
            attempts += 1
            try:
                answer = self._http.post(f"/v1/ingest/{source}", content=body, headers={
                    "Idempotency-Key": batch_id, "Content-Type": content_type})
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code == 200:
                    done = answer.json()
                    return Ack(done["records"], done["sequence"], done["duplicate"], attempts)
                message = _error_message(answer)
                if answer.status_code not in RETRIED_STATUSES:
                    raise PushRefused(answer.status_code, message)
                failure = f"{answer.status_code}: {message}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} to {source}: not acknowledged after "
                                   f"{attempts} attempts ({failure})")
            time.sleep(self._pause)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _error_message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("error", answer.text))
    except ValueError:
        return answer.text[:200]
