"""A fault-injecting HTTP proxy in front of the loopback S3 API (moto's server).

moto answers every request correctly; real object stores also throttle (503 SlowDown), fail
(500 InternalError) and refuse (403 AccessDenied). The proxy forwards each request to moto
unless a rule matches it, then answers with the rule's status and an S3 XML error body, as an
S3 endpoint would. It runs in a thread of the test process (it is test equipment, not one of
our components) and counts what it answered.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

#: Headers a proxy must not forward (hop by hop, or recomputed by httpx).
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    """Answer ``times`` requests of ``method`` (and a path containing ``path_part``) with an
    S3 error; ``times=None``: every matching request."""

    method: str
    status: int
    code: str
    path_part: str = ""
    times: int | None = None
    hits: int = 0

    def take(self, method: str, path: str) -> bool:
        if method != self.method or self.path_part not in path:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class S3FaultProxy:
    """Forwards to ``upstream``; ``rules`` decide which requests fail instead."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD path" of each request seen
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, method: str, status: int, code: str, *, path_part: str = "",
             times: int | None = None) -> Rule:
        rule = Rule(method, status, code, path_part, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def _decide(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.requests.append(f"{method} {path}")
            return next((r for r in self.rules if r.take(method, path)), None)


@contextlib.contextmanager
def s3_fault_proxy(upstream: str) -> Iterator[tuple[S3FaultProxy, str]]:
    """Start the proxy on a free loopback port: yields it and its base URL."""
    proxy = S3FaultProxy(upstream)
    client = httpx.Client(base_url=upstream, timeout=60.0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _handle(self) -> None:
            body = self._body()
            rule = proxy._decide(self.command, self.path)
            if rule is not None:
                payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}'
                           f'</Code><Message>injected by the test proxy</Message></Error>'
                           ).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["host"] = self.headers.get("host", "")  # signed by the client: keep it
            answer = client.request(self.command, self.path, headers=headers, content=body)
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            length = (answer.headers.get("content-length", "0") if self.command == "HEAD"
                      else str(len(answer.content)))  # HEAD: the object's size, no body
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.content)

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="s3-fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
