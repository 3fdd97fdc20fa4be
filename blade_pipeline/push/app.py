"""The ingest API (``blade ingest-server``): authenticated batches of records into the log.

``POST /v1/ingest/{source}``: a batch for a ``kind: push`` source, NDJSON or an Arrow IPC
stream, with ``Authorization: Bearer <JWT>`` and ``Idempotency-Key: <batch id>``. The answer,
``200 {"records": n, "sequence": s, "duplicate": false}``, is sent only after the log stored the
batch; a retry with the same key answers ``"duplicate": true`` and stores nothing. Refusals:
401/403 (token), 404 (no such push source), 400 (bad body, naming the first bad line/record and
field), 413 (too large), 415 (content type), 503 (log unavailable); a refused batch stores
nothing. ``GET /v1/ws/{source}``: the same over a WebSocket, a batch per text frame
(``{"batch_id": ..., "records": [...]}``) answered by an ack frame each. ``GET /healthz`` (the
log answers) and ``GET /metrics`` (Prometheus). With a drain, the server also moves the logged
batches into the lake (``push.drain``); with a Flight port, it serves Arrow Flight ``do_put``
(``push.flight``). Every endpoint goes through one publish path (``push.gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.push.auth import TokenVerifier
from blade_pipeline.push.drain import Drain
from blade_pipeline.push.gateway import Gateway, Refused
from blade_pipeline.push.log import IngestLog
from blade_pipeline.push.records import CONTENT_TYPES, NDJSON, parse_arrow, parse_ndjson

LOG = logging.getLogger("blade.ingest")


def create_app(sources: list[BladeSource], verifier: TokenVerifier, log: IngestLog,
               max_body_bytes: int, drain: Drain | None = None,
               flight_port: int | None = None) -> Starlette:
    """The ingest API over ``log`` for the push sources among ``sources``."""
    gateway = Gateway(sources, verifier, log)
    metrics = gateway.metrics

    async def drain_forever() -> None:
        assert drain is not None
        while True:
            moved = 0
            for source in gateway.endpoints.values():
                try:
                    moved += (await drain.drain_once(source, wait_seconds=0.5)).batches
                    metrics.drain_lag.labels(source.name).set(await drain.pending(source))
                except Exception as exc:  # the log or the lake is away: retried next round
                    LOG.warning("[%s] drain: %s: %s", source.name, type(exc).__name__, exc)
                    await asyncio.sleep(2.0)
            if not moved:
                await asyncio.sleep(0.5)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise Refused(413, "too_large", f"body of {declared} bytes is over the limit of "
                                            f"{max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise Refused(413, "too_large",
                              f"body is over the limit of {max_body_bytes} bytes")
        return bytes(body)

    async def ingest(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["source"]
        try:
            principal, source = gateway.authorize(request.headers.get("authorization"), name)
            batch_id = gateway.check_batch_id(request.headers.get("idempotency-key", ""))
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in CONTENT_TYPES:
                raise Refused(415, "content_type", f"Content-Type must be one of "
                                                   f"{', '.join(CONTENT_TYPES)}")
            body = await read_body(request)
            parser = parse_ndjson if content_type == NDJSON else parse_arrow
            table = await gateway.parse(parser, body, source, batch_id)
            stored = await gateway.publish(principal, source, batch_id, table, len(body),
                                           started)
        except Refused as refused:
            gateway.refused(name, refused)
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        return JSONResponse({"records": table.num_rows, "sequence": stored.sequence,
                             "duplicate": stored.duplicate})

    async def stream(websocket: WebSocket) -> None:
        name = websocket.path_params["source"]
        try:
            principal, source = gateway.authorize(websocket.headers.get("authorization"), name)
        except Refused as refused:
            gateway.refused(name, refused)  # the handshake is answered with the status
            await websocket.send_denial_response(
                JSONResponse({"error": refused.message}, status_code=refused.status))
            return
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await websocket.receive_text()
                started, batch_id = time.perf_counter(), ""
                try:
                    if len(text) > max_body_bytes:
                        raise Refused(413, "too_large", f"frame over {max_body_bytes} bytes")
                    try:
                        frame = json.loads(text)
                        batch_id, records = str(frame["batch_id"]), frame["records"]
                        if not isinstance(records, list):
                            raise TypeError("records is not a list")
                    except (ValueError, KeyError, TypeError) as exc:
                        raise Refused(400, "bad_frame", 'a frame is {"batch_id": ..., '
                                                        f'"records": [...]}} ({exc})') from None
                    body = "\n".join(json.dumps(r) for r in records).encode()
                    table = await gateway.parse(parse_ndjson, body, source, batch_id)
                    stored = await gateway.publish(principal, source, batch_id, table,
                                                   len(text), started)
                except Refused as refused:
                    gateway.refused(name, refused)
                    await websocket.send_json({"batch_id": batch_id, "status": refused.status,
                                               "error": refused.message})
                    continue
                await websocket.send_json({"batch_id": batch_id, "records": table.num_rows,
                                           "sequence": stored.sequence,
                                           "duplicate": stored.duplicate})

    async def healthz(request: Request) -> Response:
        if await log.healthy():
            return JSONResponse({"status": "ok", "stream": log.stream})
        return JSONResponse({"status": "log unavailable", "stream": log.stream},
                            status_code=503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await log.connect()
        LOG.info("ingest API up: push sources %s, stream %s, max message %d bytes",
                 ", ".join(sorted(gateway.endpoints)) or "none", log.stream, log.max_payload)
        task, flight = None, None
        if drain is not None:
            await drain.connect()
            task = asyncio.create_task(drain_forever(), name="drain")
        if flight_port is not None:
            from blade_pipeline.push.flight import start_flight

            flight = start_flight(gateway, asyncio.get_running_loop(), flight_port)
        try:
            yield
        finally:
            if flight is not None:
                await asyncio.to_thread(flight.shutdown)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await drain.close()
            await log.close()

    return Starlette(routes=[Route("/v1/ingest/{source}", ingest, methods=["POST"]),
                             WebSocketRoute("/v1/ws/{source}", stream),
                             Route("/healthz", healthz), Route("/metrics", prometheus)],
                     lifespan=lifespan)
