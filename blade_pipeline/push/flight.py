"""Arrow Flight ``do_put`` for bulk clients: record batches straight into the log.

A client opens ``do_put`` on the descriptor path ``[<source>]`` with the header
``authorization: Bearer <JWT>`` (checked once per call: 401/403/404 end the call) and writes
record batches, each with its batch id as ``app_metadata``. Each batch goes through the same
publish path as an HTTP one (``push.gateway``) and is answered, in order, by a JSON
``PutResult`` metadata message: ``{"batch_id", "records", "sequence", "duplicate"}``, or
``{"batch_id", "status", "error"}`` for a refused batch (the call goes on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pyarrow as pa
import pyarrow.flight as fl

from blade_pipeline.push.gateway import Gateway, Refused
from blade_pipeline.push.records import BadBatch, conform

LOG = logging.getLogger("blade.ingest")


class _Caller(fl.ServerMiddleware):
    def __init__(self, authorization: str | None) -> None:
        self.authorization = authorization


class _CallerFactory(fl.ServerMiddlewareFactory):
    def start_call(self, info: fl.CallInfo, headers: dict) -> _Caller:
        values = headers.get("authorization") or []
        return _Caller(values[0] if values else None)


class IngestFlightServer(fl.FlightServerBase):
    """``do_put`` over the gateway; its coroutines run on the HTTP server's event loop."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop, port: int,
                 host: str = "127.0.0.1") -> None:
        super().__init__(f"grpc+tcp://{host}:{port}", middleware={"caller": _CallerFactory()})
        self._gateway, self._loop = gateway, loop

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        name = descriptor.path[0].decode() if descriptor.path else ""
        try:
            principal, source = self._gateway.authorize(
                context.get_middleware("caller").authorization, name)
        except Refused as refused:
            self._gateway.refused(name, refused)
            error = {401: fl.FlightUnauthenticatedError,
                     403: fl.FlightUnauthorizedError}.get(refused.status, fl.FlightServerError)
            raise error(refused.message) from None
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
            started = time.perf_counter()
            batch_id = chunk.app_metadata.to_pybytes().decode() if chunk.app_metadata else ""
            try:
                try:
                    table = conform(pa.Table.from_batches([chunk.data]), source.push)
                except BadBatch as exc:
                    raise Refused(400, "bad_records",
                                  f"[{name}] batch {batch_id}: {exc}") from None
                stored = asyncio.run_coroutine_threadsafe(self._gateway.publish(
                    principal, source, batch_id, table, chunk.data.nbytes, started),
                    self._loop).result()
                answer = {"batch_id": batch_id, "records": table.num_rows,
                          "sequence": stored.sequence, "duplicate": stored.duplicate}
            except Refused as refused:
                self._gateway.refused(name, refused)
                answer = {"batch_id": batch_id, "status": refused.status,
                          "error": refused.message}
            writer.write(pa.py_buffer(json.dumps(answer).encode()))


def start_flight(gateway: Gateway, loop: asyncio.AbstractEventLoop,
                 port: int) -> IngestFlightServer:
    """The Flight server on ``port``, serving in a thread of its own."""
    server = IngestFlightServer(gateway, loop, port)
    threading.Thread(target=server.serve, name="flight", daemon=True).start()
    LOG.info("Arrow Flight do_put on grpc+tcp://127.0.0.1:%d", port)
    return server
