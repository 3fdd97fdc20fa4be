"""Databricks' SQL Statement Execution API (``/api/2.0/sql/...``) over the WarehouseService.

What the connector's ``use_sea=True`` backend (and any REST client) calls: sessions, statements
run in a background thread (``wait_timeout``, polling, ``cancel`` interrupting DuckDB, close),
results as ``JSON_ARRAY`` chunks inline or as links to ``ARROW_STREAM``/``JSON_ARRAY`` files on
the mock itself (``/statement-results/<statement>/<key>``, no token, like a presigned URL),
optionally LZ4-framed. Statements run, fail and are typed exactly as over Thrift.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from databricks.sql.thrift_api.TCLIService import ttypes

from blade_pipeline.databricks_sql import DatabricksSqlError
from blade_pipeline.devservices.warehouse.arrow_types import ipc_stream, json_strings, sea_columns
from blade_pipeline.devservices.warehouse.results import (
    FILE_TARGET_BYTES,
    INLINE_MAX_BYTES,
    INLINE_MAX_ROWS,
    LINK_TTL_SECONDS,
    ResultStream,
    lz4_frame,
)
from blade_pipeline.devservices.warehouse.service import (
    WORKERS,
    Canceled,
    Running,
    Session,
    WarehouseError,
    WarehouseService,
    interrupt_until_done,
    run_guarded,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/2.0/sql/"
LINK_PREFIX = "/statement-results/"
#: Statements with ``disposition=INLINE`` fail when their result is larger than this.
INLINE_LIMIT_BYTES = 25 * 1024 * 1024
#: Results stay available this long after the statement finished (polling does not extend it).
RESULT_TTL_SECONDS = 3600
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")
_WAIT = re.compile(r"^(\d+)s$")


class ApiError(Exception):
    """A refused request: HTTP ``status`` with Databricks' ``error_code`` and ``message``."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code = status, error_code


@dataclass(frozen=True)
class Reply:
    """An HTTP answer for the server to send."""

    status: int
    body: bytes | memoryview
    content_type: str = "application/json"


@dataclass(frozen=True)
class Request:
    """An ExecuteStatement request, validated."""

    statement: str
    params: list[ttypes.TSparkParameter] | None
    wait_seconds: int
    cancel_on_timeout: bool
    format: str
    disposition: str
    lz4: bool
    row_limit: int | None
    byte_limit: int | None

    @property
    def links(self) -> bool:
        return self.disposition != "INLINE"


@dataclass
class Chunk:
    """One chunk of a result: rows inline (JSON) or a file behind a link."""

    index: int
    row_offset: int
    row_count: int
    byte_count: int
    rows: list[list[str | None]] | None = None
    data: bytes | pa.Buffer | None = None
    key: str = field(default_factory=lambda: secrets.token_urlsafe(16))


@dataclass
class Result:
    """A succeeded statement's result, cut into chunks (or attached whole)."""

    schema: pa.Schema
    chunks: list[Chunk]
    truncated: bool
    attachment: bytes | None = None
    volume: bool = False


@dataclass
class Statement(Running):
    """One statement's request, state and, once it succeeded, result."""

    id: str
    session: Session
    request: Request
    state: str = "PENDING"
    error: WarehouseError | None = None
    result: Result | None = None
    closed: bool = False
    finished: float = 0.0


def _field(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = str(body.get(name) or default).upper()
    if value not in allowed:
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _positive(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or value <= 0:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{name} must be a positive integer")
    return value


def _parameters(items: Any) -> list[ttypes.TSparkParameter] | None:
    """The request's ``parameters`` as the Thrift parameters the service binds."""
    if not items:
        return None
    if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "parameters must be a list of objects")
    if not all(p.get("name") for p in items):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "every parameter needs a name: "
                       "positional parameters (?) are not supported by this API")
    return [ttypes.TSparkParameter(
        name=p["name"], type=p.get("type") or "STRING",
        value=None if p.get("value") is None else ttypes.TSparkParameterValue(
            stringValue=str(p["value"])))
        for p in items]


def parse_request(body: dict[str, Any]) -> Request:
    """Validate an ExecuteStatement body as Databricks does (400 INVALID_PARAMETER_VALUE)."""
    statement = body.get("statement")
    if not isinstance(statement, str) or not statement.strip():
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "statement is required")
    match = _WAIT.match(str(body.get("wait_timeout") or "10s"))
    wait = int(match[1]) if match else -1
    if wait != 0 and not 5 <= wait <= 50:
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       "wait_timeout must be 0s or between 5s and 50s")
    fmt = _field(body, "format", ("JSON_ARRAY", "ARROW_STREAM", "CSV"), "JSON_ARRAY")
    disposition = _field(body, "disposition",
                         ("INLINE", "EXTERNAL_LINKS", "INLINE_OR_EXTERNAL_LINKS"), "INLINE")
    if fmt == "CSV":
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       "format CSV is not served by the mock warehouse (JSON_ARRAY, ARROW_STREAM)")
    if disposition == "INLINE" and fmt != "JSON_ARRAY":
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"format {fmt} is supported only with EXTERNAL_LINKS disposition")
    compression = _field(body, "result_compression", ("NONE", "LZ4_FRAME"), "NONE")
    return Request(
        statement=statement, params=_parameters(body.get("parameters")), wait_seconds=wait,
        cancel_on_timeout=_field(body, "on_wait_timeout", ("CONTINUE", "CANCEL"),
                                 "CONTINUE") == "CANCEL",
        format=fmt, disposition=disposition, lz4=compression == "LZ4_FRAME",
        row_limit=_positive(body, "row_limit"), byte_limit=_positive(body, "byte_limit"))


def _error_code(error: WarehouseError) -> str:
    """The API's ``error_code`` for a failed statement (its SQLSTATE says whose fault)."""
    return "INTERNAL_ERROR" if error.sql_state.startswith(("XX", "HY")) else "BAD_REQUEST"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds"
                                                              ).replace("+00:00", "Z")


class StatementApi:
    """Sessions and statements of the Statement Execution API, run by ``service``."""

    def __init__(self, service: WarehouseService):
        self.service = service
        self.sessions: dict[str, Session] = {}
        self.statements: dict[str, Statement] = {}
        self._lock = threading.Lock()

    # ---- http ---------------------------------------------------------------------------
    @staticmethod
    def serves(path: str) -> bool:
        """True for the API's paths and its result links."""
        return path.startswith((API_PREFIX, LINK_PREFIX))

    @staticmethod
    def needs_token(path: str) -> bool:
        """Result links are presigned (no token), the API itself is not."""
        return path.startswith(API_PREFIX)

    @staticmethod
    def is_execute(method: str, path: str) -> bool:
        return method == "POST" and path.split("?")[0].rstrip("/") == API_PREFIX + "statements"

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """Answer one request (``path`` as sent, ``body`` JSON or empty)."""
        path = path.split("?")[0]
        try:
            if path.startswith(LINK_PREFIX):
                return self._link(method, path[len(LINK_PREFIX):].strip("/").split("/"))
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ApiError(400, "MALFORMED_REQUEST", "the request body must be an object")
            answer = self._route(method, path[len(API_PREFIX):].strip("/").split("/"), data)
            return Reply(200, json.dumps(answer, separators=(",", ":")).encode())
        except json.JSONDecodeError as exc:
            return self._refusal(ApiError(400, "MALFORMED_REQUEST", f"invalid JSON: {exc}"))
        except ApiError as exc:
            return self._refusal(exc)

    @staticmethod
    def _refusal(exc: ApiError) -> Reply:
        body = {"error_code": exc.error_code, "message": str(exc)}
        return Reply(exc.status, json.dumps(body).encode())

    def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> dict[str, Any]:
        match (method, parts):
            case ("POST", ["sessions"]):
                return self._open_session(body)
            case ("DELETE", ["sessions", session_id]):
                return self._close_session(session_id)
            case ("POST", ["statements"]):
                return self._execute(body)
            case ("GET", ["statements", sid]):
                return self._describe(self._statement(sid))
            case ("POST", ["statements", sid, "cancel"]):
                self._cancel(self._statement(sid))
                return {}
            case ("DELETE", ["statements", sid]):
                self._close(self._statement(sid))
                return {}
            case ("GET", ["statements", sid, "result", "chunks", index]) if index.isdigit():
                return self._chunk_result(self._statement(sid), int(index))
        raise ApiError(404, "ENDPOINT_NOT_FOUND",
                       f"no API to handle {method} {API_PREFIX}{'/'.join(parts)}")

    # ---- sessions -------------------------------------------------------------------------
    def _open_session(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("warehouse_id"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "warehouse_id is required")
        confs = body.get("session_confs")
        if confs is not None and not isinstance(confs, dict):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "session_confs must be an object")
        session = self._new_session(body.get("catalog"), body.get("schema"), confs)
        session_id = str(uuid.uuid4())
        with self._lock:
            self.sessions[session_id] = session
        return {"session_id": session_id}

    def _new_session(self, catalog: str | None, schema: str | None,
                     confs: dict[str, Any] | None = None) -> Session:
        """A session in ``catalog``.``schema`` with ``session_confs`` applied (an invalid value
        is refused with 400; names that are no Databricks SQL parameter are ignored)."""
        catalog = (catalog or self.service.default_catalog).lower()
        if catalog not in self.service.catalogs:
            raise ApiError(404, "NOT_FOUND", f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' "
                           "was not found. SQLSTATE: 42704")
        try:
            return Session.new(catalog, schema or self.service.default_schema, confs)
        except DatabricksSqlError as exc:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", str(exc)) from None

    def _close_session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            session = self.sessions.pop(session_id, None)
            owned = [s for s in self.statements.values() if s.session is session]
        if session is None:
            raise ApiError(404, "NOT_FOUND", f"session {session_id} does not exist")
        for stmt in owned:
            self._close(stmt)
        return {}

    def _session_for(self, body: dict[str, Any]) -> Session:
        """The session a statement runs in: the request's, or a new one for this statement."""
        session_id = body.get("session_id")
        if not session_id:
            if not body.get("warehouse_id"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "warehouse_id is required")
            return self._new_session(body.get("catalog"), body.get("schema"))
        with self._lock:
            session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(404, "NOT_FOUND", f"session {session_id} does not exist or was closed")
        return session

    # ---- statements -----------------------------------------------------------------------
    def _statement(self, statement_id: str) -> Statement:
        with self._lock:
            stmt = self.statements.get(statement_id)
        if stmt is None:
            raise ApiError(404, "NOT_FOUND", f"statement {statement_id} does not exist")
        return stmt

    def _execute(self, body: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(body)
        stmt = Statement(str(uuid.uuid4()), self._session_for(body), request)
        with self._lock:
            self.statements[stmt.id] = stmt
        log.debug("statement %s: %r", stmt.id, request.statement)
        WORKERS.submit(functools.partial(self._work, stmt))  # in the request's context
        if request.wait_seconds and not stmt.done.wait(request.wait_seconds) \
                and request.cancel_on_timeout:
            self._cancel(stmt)
            stmt.done.wait(5)
        return self._describe(stmt)

    def _work(self, stmt: Statement) -> None:
        """Run the statement and cut its result (in its own thread)."""
        with stmt.lock:
            canceled = stmt.cancel_requested
            if not canceled:
                stmt.state = "RUNNING"
        if canceled:
            self._finish(stmt, "CANCELED")
            return

        def body() -> Result:
            try:
                reader, answer = self.service.execute(stmt.session, stmt.request.statement,
                                                      stmt.request.params, stmt.attach)
                result = self._collect(stmt, ResultStream(reader))
            finally:
                with stmt.lock:  # not while an interrupt is under way
                    cursor, stmt.cursor = stmt.cursor, None
                if cursor is not None:
                    cursor.close()
            result.volume = bool(answer and answer.staging)
            return result

        result, error = run_guarded(stmt, body, stmt.request.statement,
                                    stmt.session.conf.statement_timeout)
        if result is None and stmt.cancel_requested:
            state, error = "CANCELED", None
        else:
            state = "FAILED" if error is not None else "SUCCEEDED"
        stmt.error, stmt.result = error, result
        self._finish(stmt, state)

    def _finish(self, stmt: Statement, state: str) -> None:
        with stmt.lock:
            stmt.state = "CLOSED" if stmt.closed else state
            if stmt.closed:
                stmt.result = None
            stmt.finished = time.time()
        stmt.done.set()

    def _collect(self, stmt: Statement, stream: ResultStream) -> Result:
        """The whole result (as row_limit and byte_limit allow) before the statement succeeds:
        linked files of about FILE_TARGET_BYTES each, or one inline chunk (connector 4.9 reads
        no inline chunk but the first)."""
        request = stmt.request
        rows_left = request.row_limit or 2**62
        byte_cap = request.byte_limit or 2**62
        target = FILE_TARGET_BYTES if request.links else INLINE_LIMIT_BYTES + 1
        groups: list[list[pa.RecordBatch]] = []
        spent = 0
        while rows_left > 0 and spent < byte_cap and stream.has_more:
            if stmt.cancel_requested:
                raise Canceled
            batches = stream.take(rows_left, min(target, byte_cap - spent))
            rows_left -= sum(b.num_rows for b in batches)
            spent += sum(b.nbytes for b in batches)
            if not request.links and spent > INLINE_LIMIT_BYTES:
                raise WarehouseError(
                    "Inline byte limit exceeded. Statements executed with disposition=INLINE "
                    f"can have a result size of at most {INLINE_LIMIT_BYTES} bytes. Use "
                    "disposition=EXTERNAL_LINKS for larger results.", "54000")
            groups.append(batches)
        truncated = stream.has_more
        stream.close()
        if request.disposition == "INLINE_OR_EXTERNAL_LINKS" and request.format == "ARROW_STREAM" \
                and len(groups) <= 1 and spent <= INLINE_MAX_BYTES \
                and stream.offset <= INLINE_MAX_ROWS:
            return self._attached(stream.schema, groups, truncated, request.lz4)
        chunks: list[Chunk] = []
        for index, batches in enumerate(groups):
            offset = chunks[-1].row_offset + chunks[-1].row_count if chunks else 0
            chunks.append(self._chunk(stream.schema, batches, index, offset, request))
        return Result(stream.schema, chunks, truncated)

    @staticmethod
    def _attached(schema: pa.Schema, groups: list[list[pa.RecordBatch]], truncated: bool,
                  compress: bool) -> Result:
        """A small ``INLINE_OR_EXTERNAL_LINKS`` result: one Arrow stream in the response."""
        batches = groups[0] if groups else []
        data = ipc_stream(schema, batches).to_pybytes()
        rows = sum(b.num_rows for b in batches)
        chunk = Chunk(0, 0, rows, len(data))
        return Result(schema, [chunk], truncated,
                      attachment=lz4_frame(data) if compress else data)

    @staticmethod
    def _chunk(schema: pa.Schema, batches: list[pa.RecordBatch], index: int, offset: int,
               request: Request) -> Chunk:
        rows = sum(b.num_rows for b in batches)
        if request.format == "ARROW_STREAM":
            data: bytes | pa.Buffer = ipc_stream(schema, batches)
            size = data.size
        else:
            table = pa.Table.from_batches(batches, schema)
            values = list(map(list, zip(*(json_strings(c) for c in table.columns),
                                        strict=True)))
            if not request.links:
                return Chunk(index, offset, rows, table.nbytes, rows=values)
            data = json.dumps(values, separators=(",", ":")).encode()
            size = len(data)
        if request.lz4:
            data = lz4_frame(data)
        return Chunk(index, offset, rows, size, data=data)

    def _cancel(self, stmt: Statement) -> None:
        """Ask the statement to stop: interrupt its DuckDB query until it has (the state turns
        CANCELED once it stopped; polling shows it)."""
        with stmt.lock:
            if stmt.state in TERMINAL or stmt.cancel_requested:
                return
            stmt.cancel_requested = True
        interrupt_until_done(stmt)

    def _close(self, stmt: Statement) -> None:
        """Close the statement: its result is dropped (a running one is canceled first)."""
        with stmt.lock:
            stmt.closed = True
            if stmt.state in TERMINAL:
                stmt.state, stmt.result = "CLOSED", None
        self._cancel(stmt)

    # ---- answers --------------------------------------------------------------------------
    def _describe(self, stmt: Statement) -> dict[str, Any]:
        """The StatementResponse: status, and with success the manifest and first chunk."""
        with stmt.lock:
            state, error, result = stmt.state, stmt.error, stmt.result
        status: dict[str, Any] = {"state": state}
        if state == "FAILED" and error is not None:
            status["error"] = {"error_code": _error_code(error), "message": str(error)}
            status["sql_state"] = error.sql_state
        answer: dict[str, Any] = {"statement_id": stmt.id, "status": status}
        if state == "SUCCEEDED" and result is not None:
            answer["manifest"] = self._manifest(stmt, result)
            if result.chunks:
                answer["result"] = self._result(stmt, result, 0)
        return answer

    @staticmethod
    def _manifest(stmt: Statement, result: Result) -> dict[str, Any]:
        chunks = [{"chunk_index": c.index, "row_offset": c.row_offset, "row_count": c.row_count,
                   "byte_count": c.byte_count} for c in result.chunks]
        manifest: dict[str, Any] = {
            "format": stmt.request.format,
            "schema": {"column_count": len(result.schema),
                       "columns": sea_columns(result.schema)},
            "total_chunk_count": len(chunks), "chunks": chunks,
            "total_row_count": sum(c.row_count for c in result.chunks),
            "total_byte_count": sum(c.byte_count for c in result.chunks),
            "truncated": result.truncated}
        if stmt.request.lz4 and (stmt.request.links or result.attachment is not None):
            manifest["result_compression"] = "LZ4_FRAME"
        if result.volume:
            manifest["is_volume_operation"] = True
        return manifest

    def _result(self, stmt: Statement, result: Result, index: int) -> dict[str, Any]:
        """ResultData of chunk ``index``: its rows, its link or the attached Arrow stream."""
        chunk = result.chunks[index]
        out: dict[str, Any] = {"chunk_index": index, "row_offset": chunk.row_offset,
                               "row_count": chunk.row_count, "byte_count": chunk.byte_count}
        if index + 1 < len(result.chunks):
            out["next_chunk_index"] = index + 1
            out["next_chunk_internal_link"] = \
                f"{API_PREFIX}statements/{stmt.id}/result/chunks/{index + 1}"
        if result.attachment is not None:
            out["attachment"] = base64.b64encode(result.attachment).decode()
        elif chunk.rows is not None:
            out["data_array"] = chunk.rows
        else:
            url = f"{self.service.base_url()}{LINK_PREFIX}{stmt.id}/{chunk.key}"
            out = {"external_links": [{**out, "external_link": url,
                                       "expiration": _iso(time.time() + LINK_TTL_SECONDS)}]}
        return out

    def _chunk_result(self, stmt: Statement, index: int) -> dict[str, Any]:
        with stmt.lock:
            state, result = stmt.state, stmt.result
        if state != "SUCCEEDED" or result is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"statement {stmt.id} is {state}: it has no result to fetch")
        if index >= len(result.chunks):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"chunk index {index} is out of "
                           f"range: the result has {len(result.chunks)} chunks")
        return self._result(stmt, result, index)

    def _link(self, method: str, parts: list[str]) -> Reply:
        """A result file behind an external link (no token: the link is the secret)."""
        stmt = self.statements.get(parts[0]) if len(parts) == 2 and method == "GET" else None
        result = stmt.result if stmt is not None else None
        chunk = next((c for c in result.chunks if c.key == parts[1]), None) if result else None
        if chunk is None or chunk.data is None:
            return Reply(404, b"result file expired or unknown", "text/plain")
        kind = ("application/vnd.apache.arrow.stream" if stmt.request.format == "ARROW_STREAM"
                else "application/json")
        return Reply(200, memoryview(chunk.data), kind)

    def sweep(self, ttl_seconds: float = RESULT_TTL_SECONDS) -> int:
        """Forget statements that ended more than ``ttl_seconds`` ago."""
        cutoff = time.time() - ttl_seconds
        with self._lock:
            old = [k for k, s in self.statements.items() if s.done.is_set()
                   and s.finished < cutoff]
            for key in old:
                del self.statements[key]
        return len(old)
