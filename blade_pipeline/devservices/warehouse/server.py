"""The mock Databricks SQL warehouse: Thrift TCLIService over HTTP, backed by DuckDB.

The unmodified databricks-sql-connector is its client. It answers on any ``/sql/...`` path
(``/sql/1.0/warehouses/<id>`` like a workspace with several warehouses), serves large results
as cloud-fetch files under ``/cloudfetch/``, the Statement Execution API under
``/api/2.0/sql/`` (``statement_api``), and ``GET /healthz`` for readiness probes.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hmac
import logging
import random
import signal
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
from databricks.sql.thrift_api.TCLIService import TCLIService
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.service import WarehouseService
from blade_pipeline.devservices.warehouse.statement_api import StatementApi
from blade_pipeline.devservices.warehouse.volumes import Volumes

log = logging.getLogger("blade.mock_warehouse")

#: Databricks catalog ``main`` lives in this attached DuckDB database (``main`` is reserved).
MAIN_DATABASE = "dbx_main"
SCHEMA = "blade"


@dataclass
class WarehouseConfig:
    """Settings of one mock warehouse process (see ``blade mock-warehouse --help``)."""

    host: str = "127.0.0.1"
    port: int = 8765
    db_path: str = ".blade/warehouse.duckdb"
    rows: int = 20_000
    seed: int = 42
    token: str = "dev-warehouse-token"
    invalid_fraction: float = 0.01
    end_date: dt.date | None = None  # seeded history ends here (default: today, UTC)
    days: int = 730  # seeded history spans this many days before end_date
    reseed: bool = False
    change_interval: float = 0.0
    change_rows: int = 5
    latency_ms: int = 0
    fail_rate: float = 0.0
    fault_seed: int | None = None


def open_database(cfg: WarehouseConfig) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with the warehouse file attached as catalog ``main``; seed if empty."""
    Path(cfg.db_path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"ATTACH '{cfg.db_path.replace(chr(39), chr(39) * 2)}' AS {MAIN_DATABASE}")
    cur = con.cursor()
    cur.execute(f"USE {MAIN_DATABASE}").fetchall()
    cur.execute("CREATE SCHEMA IF NOT EXISTS \"default\"").fetchall()
    generator.create_tables(cur, SCHEMA)
    table = generator.TABLES["maintenance"]
    present = cur.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0]
    if cfg.reseed or present == 0:
        started = time.perf_counter()
        counts = generator.seed(cur, cfg.rows, cfg.seed, end=cfg.end_date, days=cfg.days,
                                invalid_fraction=cfg.invalid_fraction, schema=SCHEMA)
        log.info("seeded %s in %.1fs", counts, time.perf_counter() - started)
    cur.execute("CHECKPOINT").fetchall()
    cur.close()
    return con


def _thrift_method(body: bytes) -> str:
    """Name of the Thrift call in a TBinaryProtocol (strict) message."""
    if len(body) < 8:
        return ""
    (size,) = struct.unpack(">i", body[4:8])
    return body[8:8 + size].decode("ascii", "replace") if 0 < size < 64 else ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Headers and body go out as two writes; with Nagle's algorithm on, the body then waits
    #: for the client's delayed ACK (~40 ms per Thrift call on loopback).
    disable_nagle_algorithm = True
    server: WarehouseHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, code: int, body: bytes | memoryview, content_type: str = "text/plain",
               headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        """True if the request carries the warehouse's token; else answer 401 and say False."""
        expected = f"Bearer {self.server.config.token}".encode()
        given = (self.headers.get("Authorization") or "").encode()
        if hmac.compare_digest(given, expected):
            return True
        reason = "Invalid access token." if given else "Missing access token."
        self._reply(401, reason.encode(), headers={"x-databricks-reason-phrase": reason})
        return False

    def _statement_api(self, method: str) -> bool:
        """A Statement Execution API call or one of its result links: answer it; False if the
        path is neither."""
        api = self.server.statements
        if not api.serves(self.path):
            return False
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if api.needs_token(self.path) and not self._authorized():
            return True
        cfg = self.server.config
        if cfg.latency_ms and api.needs_token(self.path):
            time.sleep(cfg.latency_ms / 1000)
        if cfg.fail_rate and api.is_execute(method, self.path) and \
                self.server.faults.random() < cfg.fail_rate:
            log.info("injected HTTP 503 on POST statements")
            self._reply(503, b"warehouse temporarily unavailable (injected fault)",
                        headers={"Retry-After": "1"})
            return True
        self.server.request_host.set(self.headers.get("Host")
                                     or f"{cfg.host}:{self.server.server_port}")
        reply = api.handle(method, self.path, body)
        self._reply(reply.status, reply.body, reply.content_type)
        return True

    def _volume(self, method: str) -> bool:
        """A presigned volume URL (``/volumes/<token>``, no bearer token, like a cloud storage
        link): answer it; False if not one. The body is read whole (sized or chunked)."""
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] != "volumes":
            return False
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.server.service.volumes.serve(method, parts[1], body)
        self._reply(status, answer, "application/octet-stream")
        return True

    def do_PUT(self) -> None:
        if not self._volume("PUT"):
            self._reply(404, b"not found")

    def do_DELETE(self) -> None:
        if not self._statement_api("DELETE") and not self._volume("DELETE"):
            self._reply(404, b"not found")

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if self._statement_api("GET") or self._volume("GET"):
            return
        if parts == ["healthz"]:
            self._reply(200, b"ok")
        elif len(parts) == 3 and parts[0] == "cloudfetch":
            rf = self.server.service.result_file(parts[1], parts[2])
            if rf is None:
                self._reply(404, b"result file expired or unknown")
            else:
                self._reply(200, memoryview(rf.data), "application/vnd.apache.arrow.stream")
        else:
            self._reply(404, b"not found")

    def do_POST(self) -> None:
        if self._statement_api("POST"):
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not self.path.startswith("/sql/"):
            self._reply(404, b"not a SQL warehouse endpoint; use /sql/1.0/warehouses/<id> "
                        b"or /api/2.0/sql/statements")
            return
        if not self._authorized():
            return
        cfg = self.server.config
        if cfg.latency_ms:
            time.sleep(cfg.latency_ms / 1000)
        if cfg.fail_rate and _thrift_method(body) == "ExecuteStatement" and \
                self.server.faults.random() < cfg.fail_rate:
            log.info("injected HTTP 503 on ExecuteStatement")
            self._reply(503, b"warehouse temporarily unavailable (injected fault)",
                        headers={"Retry-After": "1"})
            return
        self.server.request_host.set(self.headers.get("Host")
                                     or f"{cfg.host}:{self.server.server_port}")
        itrans = TTransport.TMemoryBuffer(body)
        otrans = TTransport.TMemoryBuffer()
        self.server.processor.process(TBinaryProtocol.TBinaryProtocol(itrans),
                                      TBinaryProtocol.TBinaryProtocol(otrans))
        self._reply(200, otrans.getvalue(), "application/x-thrift")


class WarehouseHTTPServer(ThreadingHTTPServer):
    """HTTP server holding the DuckDB database, the Thrift processor and the fault knobs."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: WarehouseConfig):
        self.config = config
        self.con = open_database(config)
        #: the Host of the request being answered; a context variable, so that the thread a
        #: statement runs in (started with the request's context) builds links on it too
        self.request_host: contextvars.ContextVar[str] = contextvars.ContextVar("request_host")
        catalogs = {"main": MAIN_DATABASE}
        self.service = WarehouseService(self.con, catalogs, self._base_url, volumes=Volumes(
            Path(f"{config.db_path}.volumes"), catalogs))
        self.processor = TCLIService.Processor(self.service)
        self.statements = StatementApi(self.service)
        self.faults = random.Random(config.fault_seed)
        self._stop = threading.Event()
        super().__init__((config.host, config.port), _Handler)

    def _base_url(self) -> str:
        return "http://" + self.request_host.get(f"{self.config.host}:{self.server_port}")

    def start_background(self) -> None:
        """Start the change feed (if configured) and the sweeper of abandoned operations."""
        threading.Thread(target=self._sweeper, daemon=True, name="sweeper").start()
        if self.config.change_interval > 0:
            threading.Thread(target=self._change_feed, daemon=True, name="change-feed").start()

    def _sweeper(self) -> None:
        while not self._stop.wait(30):
            self.service.sweep()
            self.statements.sweep()

    def _change_feed(self) -> None:
        tick = 0
        while not self._stop.wait(self.config.change_interval):
            tick += 1
            cur = self.con.cursor()
            try:
                cur.execute(f"USE {MAIN_DATABASE}").fetchall()
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                changed = generator.apply_changes(
                    cur, inserts=self.config.change_rows, updates=self.config.change_rows,
                    now=now, seed=self.config.seed * 1_000_003 + tick, schema=SCHEMA)
                log.info("change feed at %s: %s", now.isoformat(timespec="seconds"), changed)
            except duckdb.Error:
                log.exception("change feed failed")
            finally:
                cur.close()

    def server_close(self) -> None:
        self._stop.set()
        super().server_close()
        self.con.close()


def serve(config: WarehouseConfig) -> None:
    """Run the warehouse in the foreground until interrupted."""
    server = WarehouseHTTPServer(config)
    server.start_background()
    print(f"mock Databricks SQL warehouse on http://{config.host}:{server.server_port}"
          f"/sql/1.0/warehouses/<any-id> (db {config.db_path})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # a second stop signal would cut the database's close short: it waits until exit
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        server.server_close()
