"""The TCLIService handler: sessions, statements and metadata calls answered from DuckDB."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import duckdb
import pyarrow as pa
from databricks.sql.thrift_api.TCLIService import ttypes
from sqlglot import exp as sqlglot_exp

from blade_pipeline.databricks_sql import DatabricksSqlError, parse
from blade_pipeline.devservices.warehouse import catalog_queries
from blade_pipeline.devservices.warehouse.arrow_types import serialize_schema, thrift_schema
from blade_pipeline.devservices.warehouse.parameters import ParameterError, bind_values
from blade_pipeline.devservices.warehouse.results import (
    INLINE_MAX_BYTES,
    INLINE_MAX_ROWS,
    LINK_TTL_SECONDS,
    MAX_FILES_PER_PAGE,
    ResultFile,
    ResultStream,
)
from blade_pipeline.devservices.warehouse.session_conf import Settings
from blade_pipeline.devservices.warehouse.session_conf import answer as answer_setting
from blade_pipeline.devservices.warehouse.sql_dialect import from_duckdb, translate
from blade_pipeline.devservices.warehouse.volumes import Volumes, parse_staging

log = logging.getLogger(__name__)
T = TypeVar("T")

PROTOCOL_VERSION = ttypes.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V8
READER_BATCH_ROWS = 65_536
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
OK = ttypes.TStatus(statusCode=ttypes.TStatusCode.SUCCESS_STATUS)
State = ttypes.TOperationState
#: ExecuteStatement waits this long for a statement to finish and answer with its results
#: (direct results); a longer one answers RUNNING and is polled. Databricks' server holds the
#: call a few seconds too; until it answers the client has no handle to cancel with.
DIRECT_RESULTS_WAIT_SECONDS = 5.0
#: GetOperationStatus on a running statement answers when it ends or after this long: the
#: connector polls without a pause (Databricks holds the call up to ~5 s; shorter here so that
#: a cancel, which waits for the connection's poll to return, goes through quickly).
STATUS_WAIT_SECONDS = 1.0
_ACTIVE = (State.INITIALIZED_STATE, State.PENDING_STATE, State.RUNNING_STATE)
#: Spark's Thrift server answers a statement without output (DDL, USE) with this schema, no rows.
NO_OUTPUT_SCHEMA = pa.schema([pa.field("Result", pa.string())])


class WarehouseError(Exception):
    """An error answered to the client as a failed call or a failed operation."""

    def __init__(self, message: str, sql_state: str = "42000"):
        super().__init__(message)
        self.sql_state = sql_state


def as_warehouse_error(exc: WarehouseError | ParameterError) -> WarehouseError:
    """The error a statement fails with: a parameter that cannot be bound is SQLSTATE 22023."""
    return exc if isinstance(exc, WarehouseError) else WarehouseError(str(exc), "22023")


def _error_status(message: str, sql_state: str = "HY000",
                  code: int = ttypes.TStatusCode.ERROR_STATUS) -> ttypes.TStatus:
    return ttypes.TStatus(statusCode=code, errorMessage=message, displayMessage=message,
                          sqlState=sql_state)


def _new_id() -> ttypes.THandleIdentifier:
    return ttypes.THandleIdentifier(guid=secrets.token_bytes(16), secret=secrets.token_bytes(16))


@dataclass
class Session:
    handle: ttypes.THandleIdentifier
    catalog: str
    schema: str
    conf: Settings = field(default_factory=Settings)

    @classmethod
    def new(cls, catalog: str, schema: str,
            confs: dict[str, object] | None = None) -> Session:
        """A session with a fresh handle, in ``catalog``.``schema``, opened with ``confs``
        (DatabricksSqlError for an invalid value)."""
        session = cls(_new_id(), catalog, schema)
        session.conf.apply(confs)
        return session


class Canceled(Exception):
    """A statement was canceled before or while it ran."""


@dataclass(kw_only=True)
class Running:
    """A statement run on a DuckDB cursor in a thread of its own (Thrift's operations, the
    Statement Execution API's statements): the cursor is kept while it runs, to interrupt it."""

    cursor: duckdb.DuckDBPyConnection | None = None
    cancel_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set when its thread ends
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Keep the cursor the statement runs on (to interrupt it); refuse if canceled."""
        with self.lock:
            self.cursor = cursor
            if self.cancel_requested:
                raise Canceled


class _Workers:
    """Threads that run operations, each in the context it was submitted from: an idle thread
    is reused (a new thread per statement costs ~0.3 ms of a ~3 ms round trip), else a new one
    starts, so every operation runs at once; a thread idle for ``idle_seconds`` ends."""

    def __init__(self, idle_seconds: float = 60):
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._idle_seconds = idle_seconds

    def submit(self, fn: Callable[[], None]) -> None:
        task = functools.partial(contextvars.copy_context().run, fn)
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._serve, args=(task,), daemon=True,
                         name="operation").start()

    def _serve(self, task: Callable[[], None]) -> None:
        while True:
            task()
            with self._lock:
                self._idle += 1
            try:
                task = self._tasks.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:  # a task handed over just as the wait ended is still run
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


#: The threads every statement runs in (Thrift's operations, the API's statements).
WORKERS = _Workers()


@dataclass
class Operation(Running):
    """One statement or metadata call: run in its own thread, its state polled, its result
    paged; ``lz4`` and ``row_limit`` as the client asked."""

    handle: ttypes.TOperationHandle
    session: Session
    state: int = State.PENDING_STATE
    stream: ResultStream | None = None
    url_based: bool = False
    error: WarehouseError | None = None
    modified_rows: int | None = None
    staging: bool = False  # a volume PUT/GET/REMOVE: the client moves the bytes itself
    lz4: bool = False
    row_limit: int | None = None
    created: float = field(default_factory=time.time)
    completed: float = 0.0
    touched: float = field(default_factory=time.time)

    @property
    def key(self) -> bytes:
        return self.handle.operationId.guid

    def cancel(self) -> None:
        """Cancel a pending or running operation: CANCELED at once (as Spark's Thrift server
        does), its DuckDB query interrupted until its thread ends. A finished, failed or
        canceled operation stays as it is."""
        with self.lock:
            if self.state not in _ACTIVE:
                return
            self.state, self.cancel_requested = State.CANCELED_STATE, True
            self.completed = time.time()
        interrupt_until_done(self)


def interrupt_until_done(work: Running, give_up_after: float = 60) -> None:
    """Interrupt ``work``'s DuckDB query, from a thread of its own, again and again until its
    thread ends: DuckDB's interrupt stops only a query that is running, so one about to start
    is stopped too."""

    def repeat() -> None:
        deadline = time.monotonic() + give_up_after
        while not work.done.is_set() and time.monotonic() < deadline:
            with work.lock, contextlib.suppress(duckdb.Error):
                if work.cursor is not None:
                    work.cursor.interrupt()
            work.done.wait(0.05)

    threading.Thread(target=repeat, daemon=True, name="interrupt").start()


@contextlib.contextmanager
def statement_timeout(work: Running, seconds: int) -> Iterator[Callable[[], bool]]:
    """While the block runs ``work``'s statement, interrupt it once it has run ``seconds``
    (the session's STATEMENT_TIMEOUT; 0: no limit); yields whether that happened."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        interrupt_until_done(work)

    timer = threading.Timer(seconds, expire) if seconds > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield fired.is_set
    finally:
        if timer is not None:
            timer.cancel()


def timeout_error(seconds: int) -> WarehouseError:
    """What a warehouse answers for a statement it canceled at its STATEMENT_TIMEOUT."""
    error = DatabricksSqlError(
        "QUERY_EXECUTION_TIMEOUT_EXCEEDED", f"Query execution was cancelled due to exceeding "
        f"the timeout ({seconds}s). You can increase the limit in seconds by setting "
        "STATEMENT_TIMEOUT.", "57KD0")
    return WarehouseError(str(error), error.sql_state)


def run_guarded(work: Running, body: Callable[[], T], sql: str, timeout: int
                ) -> tuple[T | None, WarehouseError | None]:
    """Run ``body`` (a statement and the reading of its result) for ``work`` in its thread,
    interrupted past ``timeout`` seconds: what it returned, or the error it failed with as a
    warehouse answers it. Both are None when it was canceled (``work.cancel_requested``)."""
    with statement_timeout(work, timeout) as timed_out:
        try:
            value, error = body(), None
        except Canceled:
            return None, None
        except (WarehouseError, ParameterError) as exc:
            value, error = None, as_warehouse_error(exc)
        except duckdb.Error as exc:  # while reading the result
            sql_error = from_duckdb(exc, sql)
            value, error = None, WarehouseError(str(sql_error), sql_error.sql_state)
        except Exception as exc:  # the statement fails, the server goes on
            log.exception("statement failed: %r", sql)
            value, error = None, WarehouseError(
                f"[INTERNAL_ERROR] the mock warehouse failed: {exc} SQLSTATE: XX000", "XX000")
    if timed_out():
        return None, timeout_error(timeout)
    return value, error


_DML = (sqlglot_exp.Insert, sqlglot_exp.Update, sqlglot_exp.Delete, sqlglot_exp.Merge)
_DDL = (sqlglot_exp.Create, sqlglot_exp.Drop, sqlglot_exp.Alter, sqlglot_exp.TruncateTable,
        sqlglot_exp.Comment)


def _no_output(tree: sqlglot_exp.Expression | None) -> bool:
    """True for DDL, which Databricks answers without output (CREATE … AS SELECT aside)."""
    return isinstance(tree, _DDL) and not (
        isinstance(tree, sqlglot_exp.Create) and tree.kind == "TABLE"
        and isinstance(tree.expression, sqlglot_exp.Query))


@dataclass(frozen=True)
class Answer:
    """A small answer with what the operation status must say besides: a DML statement's row
    count (``numModifiedRows``), or that it is a volume operation (``isStagingOperation``)."""

    table: pa.Table
    modified_rows: int | None = None
    staging: bool = False

    @classmethod
    def dml(cls, count: int, insert: bool) -> Answer:
        """Databricks' answer to DML: rows affected (and inserted, for INSERT)."""
        columns = {"num_affected_rows": pa.array([count], pa.int64())}
        if insert:
            columns["num_inserted_rows"] = pa.array([count], pa.int64())
        return cls(pa.table(columns), modified_rows=count)


def as_reader(result: pa.RecordBatchReader | Answer | None
              ) -> tuple[pa.RecordBatchReader, Answer | None]:
    """A statement's rows as one reader (none, as for DDL: NO_OUTPUT_SCHEMA and no rows), and
    its Answer if it had one."""
    if isinstance(result, Answer):
        return pa.RecordBatchReader.from_batches(result.table.schema,
                                                 result.table.to_batches()), result
    if result is None:
        return pa.RecordBatchReader.from_batches(NO_OUTPUT_SCHEMA, []), None
    return result, None


class WarehouseService:
    """Implements ``TCLIService.Iface`` over one DuckDB database instance.

    ``catalogs`` maps Databricks catalog names (lower-case) to the attached DuckDB database
    that holds each. ``base_url`` is a callable giving the http base of the current request,
    used to build cloud-fetch links.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, catalogs: dict[str, str],
                 base_url: Callable[[], str], default_catalog: str = "main",
                 default_schema: str = "default", volumes: Volumes | None = None):
        self.con = con
        self.volumes = volumes
        self.catalogs = catalogs
        self.base_url = base_url
        self.default_catalog = default_catalog
        self.default_schema = default_schema
        self.sessions: dict[bytes, Session] = {}
        self.operations: dict[bytes, Operation] = {}
        self._lock = threading.Lock()

    # ---- handles -------------------------------------------------------------------------
    def _session(self, handle: ttypes.TSessionHandle) -> Session:
        sid = handle.sessionId if handle else None
        session = self.sessions.get(sid.guid) if sid else None
        if session is None or session.handle.secret != sid.secret:
            raise WarehouseError("Invalid SessionHandle: session does not exist or was closed",
                                 "HY000")
        return session

    def _operation(self, handle: ttypes.TOperationHandle) -> Operation | None:
        oid = handle.operationId if handle else None
        op = self.operations.get(oid.guid) if oid else None
        if op is None or op.handle.operationId.secret != oid.secret:
            return None
        return op

    def result_file(self, op_guid_hex: str, key: str) -> ResultFile | None:
        """The cloud-fetch file ``key`` of an open operation (for the http layer)."""
        op = self.operations.get(bytes.fromhex(op_guid_hex)) if len(op_guid_hex) == 32 else None
        if op is None or op.stream is None:
            return None
        with op.stream.lock:
            rf = op.stream.files.get(key)
        return rf if rf and rf.expires_at > time.time() else None

    # ---- sessions ------------------------------------------------------------------------
    def OpenSession(self, req: ttypes.TOpenSessionReq) -> ttypes.TOpenSessionResp:
        ns = req.initialNamespace
        catalog = (ns.catalogName if ns and ns.catalogName else self.default_catalog).lower()
        schema = ns.schemaName if ns and ns.schemaName else self.default_schema
        if catalog not in self.catalogs:
            return ttypes.TOpenSessionResp(
                status=_error_status(f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' was not "
                                     "found.", "42704"),
                serverProtocolVersion=PROTOCOL_VERSION)
        try:
            session = Session.new(catalog, schema, req.configuration)
        except DatabricksSqlError as exc:
            return ttypes.TOpenSessionResp(status=_error_status(str(exc), exc.sql_state),
                                           serverProtocolVersion=PROTOCOL_VERSION)
        with self._lock:
            self.sessions[session.handle.guid] = session
        return ttypes.TOpenSessionResp(
            status=OK, serverProtocolVersion=PROTOCOL_VERSION,
            sessionHandle=ttypes.TSessionHandle(sessionId=session.handle),
            configuration={}, canUseMultipleCatalogs=True,
            initialNamespace=ttypes.TNamespace(catalogName=catalog, schemaName=schema))

    def CloseSession(self, req: ttypes.TCloseSessionReq) -> ttypes.TCloseSessionResp:
        sid = req.sessionHandle.sessionId
        with self._lock:
            self.sessions.pop(sid.guid, None)
            doomed = [k for k, op in self.operations.items()
                      if op.session.handle.guid == sid.guid]
            ops = [self.operations.pop(k) for k in doomed]
        for op in ops:
            self._drop(op)  # a running one is canceled
        return ttypes.TCloseSessionResp(status=OK)

    def GetInfo(self, req: ttypes.TGetInfoReq) -> ttypes.TGetInfoResp:
        return ttypes.TGetInfoResp(
            status=OK, infoValue=ttypes.TGetInfoValue(stringValue="blade mock SQL warehouse"))

    # ---- statements ----------------------------------------------------------------------
    def _cursor(self, session: Session) -> duckdb.DuckDBPyConnection:
        cur = self.con.cursor()
        db = self.catalogs[session.catalog]
        schema = session.schema
        known = cur.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE database_name = $1 AND schema_name = $2",
            [db, schema]).fetchone()[0]
        cur.execute(f'USE "{db}"."{schema}"' if known else f'USE "{db}"').fetchall()
        cur.execute(session.conf.duckdb_setup())  # the session's time zone and ANSI mode
        return cur

    def _use(self, session: Session, sql: str) -> bool:
        """Handle ``USE [CATALOG|SCHEMA] name`` on the session; True if it was one."""
        words = sql.strip().rstrip(";").replace("`", "").split()
        if not words or words[0].upper() != "USE":
            return False
        words = words[1:]
        if words and words[0].upper() in ("CATALOG", "SCHEMA", "DATABASE"):
            kind, names = words[0].upper(), words[1:]
        else:
            kind, names = "SCHEMA", words
        if len(names) != 1:
            raise WarehouseError(f"[PARSE_SYNTAX_ERROR] cannot parse USE statement: {sql}",
                                 "42601")
        parts = names[0].split(".")
        if kind == "CATALOG" or len(parts) == 2:
            catalog = parts[0].lower()
            if catalog not in self.catalogs:
                raise WarehouseError(f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' was "
                                     "not found.", "42704")
            session.catalog = catalog
            if kind == "CATALOG":
                return True
        session.schema = parts[-1]
        return True

    def _run(self, session: Session, sql: str, params: object,
             on_cursor: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
             ) -> pa.RecordBatchReader | Answer | None:
        """Run ``sql``; ``on_cursor`` is shown the DuckDB cursor before the statement runs on it
        (to interrupt it from another thread)."""
        if self._use(session, sql):
            return None
        try:
            setting = answer_setting(session.conf, sql)  # SET, RESET, SET TIME ZONE
        except DatabricksSqlError as exc:
            raise WarehouseError(str(exc), exc.sql_state) from None
        if setting is not None:
            return Answer(setting)
        staged = parse_staging(sql)
        if staged is not None:
            if self.volumes is None:
                raise WarehouseError("[UNSUPPORTED_FEATURE] this warehouse has no volumes. "
                                     "SQLSTATE: 0A000", "0A000")
            try:
                return Answer(self.volumes.plan(staged, self.base_url()), staging=True)
            except DatabricksSqlError as exc:
                raise WarehouseError(str(exc), exc.sql_state) from None
        try:
            described = catalog_queries.describe_table(sql)
            shown = None if described else catalog_queries.show(sql)
            tree = None if described or shown else parse(sql)  # cached: translate reuses it
            duck_sql = None if tree is None else translate(sql, self.catalogs, session.conf.ansi)
        except DatabricksSqlError as exc:
            raise WarehouseError(str(exc), exc.sql_state) from None
        cur = self._cursor(session)
        if on_cursor is not None:
            on_cursor(cur)
        try:
            if described is not None:
                return catalog_queries.describe(cur, self.catalogs, session.catalog,
                                                session.schema, described)
            if shown is not None:
                return catalog_queries.answer_show(cur, self.catalogs, session.catalog,
                                                   session.schema, shown)
            rel = cur.sql(duck_sql, params=params)
            if isinstance(tree, _DML):  # DuckDB answers a count; Databricks num_affected_rows
                count = int(rel.fetchall()[0][0]) if rel is not None else 0
                return Answer.dml(count, isinstance(tree, sqlglot_exp.Insert))
            if rel is None or _no_output(tree):  # DuckDB answers DDL with Count or Success
                return None
            return rel.to_arrow_reader(READER_BATCH_ROWS)
        except DatabricksSqlError as exc:
            cur.close()
            raise WarehouseError(str(exc), exc.sql_state) from None
        except duckdb.Error as exc:
            cur.close()
            error = from_duckdb(exc, sql)
            raise WarehouseError(str(error), error.sql_state) from exc

    def _start(self, session: Session, op_type: int,
               run: Callable[[Callable[[duckdb.DuckDBPyConnection], None]],
                             pa.RecordBatchReader | Answer | None],
               can_download: bool, direct: ttypes.TSparkGetDirectResults | None,
               lz4: bool = False, row_limit: int | None = None, run_async: bool = True,
               ) -> tuple[ttypes.TOperationHandle, ttypes.TSparkDirectResults | None]:
        """Start an operation: ``run`` (handed the callback that takes its DuckDB cursor, to
        interrupt it) runs in a thread of its own. With ``direct`` results asked for, wait up to
        DIRECT_RESULTS_WAIT_SECONDS and answer status, metadata and first page of a finished
        one, the status alone of one still running; without (the connector's execute_async),
        answer at once; ``run_async`` False (a synchronous client): wait until it ended."""
        handle = ttypes.TOperationHandle(operationId=_new_id(), operationType=op_type,
                                         hasResultSet=True)
        op = Operation(handle, session, lz4=lz4, row_limit=row_limit)
        max_rows = direct.maxRows if direct and direct.maxRows else DEFAULT_MAX_ROWS
        max_bytes = direct.maxBytes if direct and direct.maxBytes else DEFAULT_MAX_BYTES
        with self._lock:
            self.operations[op.key] = op
        # the request's context (its Host, for links) goes along to the statement's thread
        WORKERS.submit(functools.partial(self._work, op, run, can_download, max_rows,
                                          max_bytes))
        if not run_async:
            op.done.wait()
        elif direct is not None:
            op.done.wait(DIRECT_RESULTS_WAIT_SECONDS)
        if direct is None:
            return handle, None
        results = ttypes.TSparkDirectResults(operationStatus=self._status(op))
        state = results.operationStatus.operationState
        if state == State.FINISHED_STATE:
            results.resultSetMetadata = self._metadata(op)
            # The first page of links holds one file: the client starts downloading (and its
            # caller working) while the next files are cut, as with a real warehouse.
            results.resultSet = self._fetch(op, max_rows, max_bytes, max_files=1)
        # Inline results that are complete close at once; cloud-fetch results stay open until
        # the client's CloseOperation, since their files are downloaded after this answer.
        if state == State.ERROR_STATE or (state == State.FINISHED_STATE and not op.url_based
                                          and not results.resultSet.hasMoreRows):
            results.closeOperation = ttypes.TCloseOperationResp(status=OK)
            self._drop(op)
        return handle, results

    def _work(self, op: Operation,
              run: Callable[[Callable[[duckdb.DuckDBPyConnection], None]],
                            pa.RecordBatchReader | Answer | None],
              can_download: bool, max_rows: int, max_bytes: int) -> None:
        """Run the operation's statement (in its own thread) until its result is ready to
        page: small enough to answer inline, or read far enough to know it is not."""
        with op.lock:
            if op.state == State.PENDING_STATE:
                op.state = State.RUNNING_STATE

        def body() -> tuple[ResultStream, Answer | None, bool]:
            if op.cancel_requested:
                raise Canceled
            reader, answer = as_reader(run(op.attach))
            stream = ResultStream(reader, op.row_limit, op.lz4)
            small = stream.peek_small(min(INLINE_MAX_ROWS, max_rows),
                                      min(INLINE_MAX_BYTES, max_bytes))
            return stream, answer, can_download and not small

        done, error = run_guarded(op, body, "", op.session.conf.statement_timeout)
        stream, answer, url_based = done or (None, None, False)
        with op.lock:
            op.cursor = None
            canceled = op.cancel_requested
            if not canceled:
                op.stream, op.url_based, op.error = stream, url_based, error
                if answer is not None:
                    op.modified_rows, op.staging = answer.modified_rows, answer.staging
                op.state = State.ERROR_STATE if error is not None else State.FINISHED_STATE
                op.completed = time.time()
        if canceled and stream is not None:
            stream.close()
        op.done.set()

    def ExecuteStatement(self, req: ttypes.TExecuteStatementReq
                         ) -> ttypes.TExecuteStatementResp:
        try:
            session = self._session(req.sessionHandle)
        except WarehouseError as exc:
            return ttypes.TExecuteStatementResp(
                status=_error_status(str(exc), code=ttypes.TStatusCode.INVALID_HANDLE_STATUS))
        if not req.canReadArrowResult:
            return ttypes.TExecuteStatementResp(status=_error_status(
                "this warehouse serves Arrow results only (install pyarrow)"))
        log.debug("execute %r", req.statement)

        def run(attach: Callable[[duckdb.DuckDBPyConnection], None]
                ) -> pa.RecordBatchReader | Answer | None:
            return self._run(session, req.statement, bind_values(req.parameters), attach)

        handle, direct = self._start(
            session, ttypes.TOperationType.EXECUTE_STATEMENT, run, bool(req.canDownloadResult),
            req.getDirectResults, lz4=bool(req.canDecompressLZ4Result),
            row_limit=req.resultRowLimit, run_async=bool(req.runAsync))
        return ttypes.TExecuteStatementResp(status=OK, operationHandle=handle,
                                            directResults=direct)

    def execute(self, session: Session, sql: str, params: list[ttypes.TSparkParameter] | None,
                on_cursor: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                ) -> tuple[pa.RecordBatchReader, Answer | None]:
        """Run ``sql`` as ExecuteStatement does, for another front end (the Statement Execution
        API): its rows and its Answer, if any. WarehouseError for what fails."""
        try:
            return as_reader(self._run(session, sql, bind_values(params), on_cursor))
        except ParameterError as exc:
            raise as_warehouse_error(exc) from None

    # ---- metadata calls --------------------------------------------------------------------
    def _metadata_call(self, req: object, op_type: int,
                       query: Callable[[duckdb.DuckDBPyConnection], pa.RecordBatchReader],
                       resp_cls: type) -> object:
        try:
            session = self._session(req.sessionHandle)
        except WarehouseError as exc:
            return resp_cls(status=_error_status(
                str(exc), code=ttypes.TStatusCode.INVALID_HANDLE_STATUS))

        def run(attach: Callable[[duckdb.DuckDBPyConnection], None]) -> pa.RecordBatchReader:
            cur = self._cursor(session)
            attach(cur)
            try:
                return query(cur)
            except duckdb.Error as exc:
                error = from_duckdb(exc, "")
                raise WarehouseError(str(error), error.sql_state) from exc

        handle, direct = self._start(session, op_type, run, False, req.getDirectResults)
        return resp_cls(status=OK, operationHandle=handle, directResults=direct)

    def GetCatalogs(self, req: ttypes.TGetCatalogsReq) -> ttypes.TGetCatalogsResp:
        return self._metadata_call(
            req, ttypes.TOperationType.GET_CATALOGS,
            lambda cur: catalog_queries.catalogs(cur, self.catalogs), ttypes.TGetCatalogsResp)

    def GetSchemas(self, req: ttypes.TGetSchemasReq) -> ttypes.TGetSchemasResp:
        return self._metadata_call(
            req, ttypes.TOperationType.GET_SCHEMAS,
            lambda cur: catalog_queries.schemas(cur, self.catalogs, req.catalogName,
                                                req.schemaName),
            ttypes.TGetSchemasResp)

    def GetTables(self, req: ttypes.TGetTablesReq) -> ttypes.TGetTablesResp:
        return self._metadata_call(
            req, ttypes.TOperationType.GET_TABLES,
            lambda cur: catalog_queries.tables(cur, self.catalogs, req.catalogName,
                                               req.schemaName, req.tableName, req.tableTypes),
            ttypes.TGetTablesResp)

    def GetColumns(self, req: ttypes.TGetColumnsReq) -> ttypes.TGetColumnsResp:
        return self._metadata_call(
            req, ttypes.TOperationType.GET_COLUMNS,
            lambda cur: catalog_queries.columns(cur, self.catalogs, req.catalogName,
                                                req.schemaName, req.tableName, req.columnName),
            ttypes.TGetColumnsResp)

    def GetTableTypes(self, req: ttypes.TGetTableTypesReq) -> ttypes.TGetTableTypesResp:
        return self._metadata_call(
            req, ttypes.TOperationType.GET_TABLE_TYPES,
            lambda cur: catalog_queries.table_types(), ttypes.TGetTableTypesResp)

    def _unsupported(self, resp_cls: type, what: str) -> object:
        return resp_cls(status=_error_status(f"{what} is not supported by the mock warehouse",
                                             "0A000"))

    def GetTypeInfo(self, req: ttypes.TGetTypeInfoReq) -> ttypes.TGetTypeInfoResp:
        return self._unsupported(ttypes.TGetTypeInfoResp, "GetTypeInfo")

    def GetFunctions(self, req: ttypes.TGetFunctionsReq) -> ttypes.TGetFunctionsResp:
        return self._unsupported(ttypes.TGetFunctionsResp, "GetFunctions")

    def GetPrimaryKeys(self, req: ttypes.TGetPrimaryKeysReq) -> ttypes.TGetPrimaryKeysResp:
        return self._unsupported(ttypes.TGetPrimaryKeysResp, "GetPrimaryKeys")

    def GetCrossReference(self, req: ttypes.TGetCrossReferenceReq
                          ) -> ttypes.TGetCrossReferenceResp:
        return self._unsupported(ttypes.TGetCrossReferenceResp, "GetCrossReference")

    def GetDelegationToken(self, req: object) -> ttypes.TGetDelegationTokenResp:
        return self._unsupported(ttypes.TGetDelegationTokenResp, "GetDelegationToken")

    def CancelDelegationToken(self, req: object) -> ttypes.TCancelDelegationTokenResp:
        return self._unsupported(ttypes.TCancelDelegationTokenResp, "CancelDelegationToken")

    def RenewDelegationToken(self, req: object) -> ttypes.TRenewDelegationTokenResp:
        return self._unsupported(ttypes.TRenewDelegationTokenResp, "RenewDelegationToken")

    # ---- operations ------------------------------------------------------------------------
    def _status(self, op: Operation, wait: float = 0.0) -> ttypes.TGetOperationStatusResp:
        """The operation's status; a pending or running one is waited for up to ``wait``
        seconds first (answered as soon as it ends)."""
        if wait > 0 and op.state in _ACTIVE:
            op.done.wait(wait)
        op.touched = time.time()
        with op.lock:
            state, error, completed = op.state, op.error, op.completed
        resp = ttypes.TGetOperationStatusResp(
            status=OK, operationState=state, hasResultSet=state != State.ERROR_STATE,
            numModifiedRows=op.modified_rows if state == State.FINISHED_STATE else None,
            operationStarted=int(op.created * 1000),
            operationCompleted=int(completed * 1000) if completed else None)
        if error is not None and state == State.ERROR_STATE:
            resp.errorMessage = resp.displayMessage = str(error)
            resp.sqlState = error.sql_state
        return resp

    @staticmethod
    def _not_finished(op: Operation) -> str:
        """What Spark's Thrift server (Hive's operation) says when asked for the result of an
        operation that did not finish."""
        name = State._VALUES_TO_NAMES.get(op.state, "UNKNOWN").removesuffix("_STATE")
        return f"Expected state FINISHED, but found {name}"

    def _metadata(self, op: Operation) -> ttypes.TGetResultSetMetadataResp:
        if op.state != State.FINISHED_STATE or op.stream is None:
            return ttypes.TGetResultSetMetadataResp(status=_error_status(self._not_finished(op)))
        schema = op.stream.schema
        return ttypes.TGetResultSetMetadataResp(
            status=OK, schema=thrift_schema(schema), arrowSchema=serialize_schema(schema),
            resultFormat=(ttypes.TSparkRowSetType.URL_BASED_SET if op.url_based
                          else ttypes.TSparkRowSetType.ARROW_BASED_SET),
            lz4Compressed=op.lz4, isStagingOperation=op.staging)

    def _fetch(self, op: Operation, max_rows: int, max_bytes: int,
               max_files: int = MAX_FILES_PER_PAGE) -> ttypes.TFetchResultsResp:
        stream = op.stream
        op.touched = time.time()
        with stream.lock:
            start = stream.offset
            if op.url_based:
                now = time.time()
                links = [
                    ttypes.TSparkArrowResultLink(
                        fileLink=f"{self.base_url()}/cloudfetch/{op.key.hex()}/{rf.key}",
                        expiryTime=int(now + LINK_TTL_SECONDS), startRowOffset=rf.start_row,
                        rowCount=rf.row_count, bytesNum=rf.data.size, httpHeaders={})
                    for rf in stream.next_files(max_bytes, max_files)]
                rowset = ttypes.TRowSet(startRowOffset=start, rows=[], resultLinks=links)
            else:
                batches = [ttypes.TSparkArrowBatch(batch=data, rowCount=rows)
                           for data, rows in stream.take_inline(max_rows, max_bytes)]
                rowset = ttypes.TRowSet(startRowOffset=start, rows=[], arrowBatches=batches)
            more = stream.has_more
        return ttypes.TFetchResultsResp(status=OK, hasMoreRows=more, results=rowset)

    def _drop(self, op: Operation) -> None:
        """Forget the operation: one still running is canceled, its result closed."""
        with self._lock:
            self.operations.pop(op.key, None)
        op.cancel()
        if op.stream is not None:
            op.stream.close()

    def GetOperationStatus(self, req: ttypes.TGetOperationStatusReq
                           ) -> ttypes.TGetOperationStatusResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return ttypes.TGetOperationStatusResp(status=_error_status(
                "Invalid OperationHandle", code=ttypes.TStatusCode.INVALID_HANDLE_STATUS))
        return self._status(op, STATUS_WAIT_SECONDS)

    def GetResultSetMetadata(self, req: ttypes.TGetResultSetMetadataReq
                             ) -> ttypes.TGetResultSetMetadataResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return ttypes.TGetResultSetMetadataResp(status=_error_status(
                "Invalid OperationHandle", code=ttypes.TStatusCode.INVALID_HANDLE_STATUS))
        return self._metadata(op)

    def FetchResults(self, req: ttypes.TFetchResultsReq) -> ttypes.TFetchResultsResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return ttypes.TFetchResultsResp(status=_error_status(
                "Invalid OperationHandle: the operation is closed or unknown",
                code=ttypes.TStatusCode.INVALID_HANDLE_STATUS))
        if op.state != State.FINISHED_STATE or op.stream is None:
            return ttypes.TFetchResultsResp(status=_error_status(self._not_finished(op)))
        if req.orientation not in (None, ttypes.TFetchOrientation.FETCH_NEXT):
            return ttypes.TFetchResultsResp(status=_error_status(
                "only FETCH_NEXT is supported", "0A000"))
        resp = self._fetch(op, req.maxRows or DEFAULT_MAX_ROWS, req.maxBytes or DEFAULT_MAX_BYTES)
        if req.includeResultSetMetadata:
            resp.resultSetMetadata = self._metadata(op)
        return resp

    def CancelOperation(self, req: ttypes.TCancelOperationReq) -> ttypes.TCancelOperationResp:
        op = self._operation(req.operationHandle)
        if op is not None:
            op.cancel()
        return ttypes.TCancelOperationResp(status=OK)

    def CloseOperation(self, req: ttypes.TCloseOperationReq) -> ttypes.TCloseOperationResp:
        op = self._operation(req.operationHandle)
        if op is not None:
            self._drop(op)
        return ttypes.TCloseOperationResp(status=OK)

    def sweep(self, max_idle_seconds: float = LINK_TTL_SECONDS) -> int:
        """Drop operations idle for ``max_idle_seconds`` (abandoned by their clients; one still
        running is canceled)."""
        cutoff = time.time() - max_idle_seconds
        with self._lock:
            old = [op for op in self.operations.values() if op.touched < cutoff]
        for op in old:
            self._drop(op)
        return len(old)
