"""Run dev services as child processes on loopback: start, wait until ready, stop (demo, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def _default_signals() -> None:
    """In the child: default SIGINT/SIGTERM handling (a launcher may have changed them)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A dev service running as a child process."""

    args: list[str]
    port: int
    log_path: Path
    popen: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str | None, timeout: float = 60.0,
              env: dict | None = None) -> None:
        """Launch the process and wait until GET ``ready_path`` answers (any HTTP status), or
        with ``ready_path=None`` (a server that does not speak HTTP) until its port accepts
        connections."""
        self.launch(env)
        self.wait_ready(ready_path, timeout)

    def launch(self, env: dict | None = None) -> None:
        """Launch the process without waiting for it (see :meth:`wait_ready`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, preexec_fn=_default_signals,
            )

    def wait_ready(self, ready_path: str | None, timeout: float = 60.0) -> None:
        """Wait until the launched process is ready (see :meth:`start`); stop it and raise
        when it exits or is not ready in ``timeout`` seconds."""
        assert self.popen is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.args} exited early:\n{self.log_text()}")
            if ready_path is None:
                if port_in_use(self.port):
                    return
            else:
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(self.base_url + ready_path, timeout=1.0)
                    return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.args} not ready after {timeout}s:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_all(servers: Sequence[ServerProcess], timeout: float = 10.0) -> None:
    """Stop ``servers`` side by side: SIGTERM to all first, then wait for each."""
    for server in servers:
        if server.popen and server.popen.poll() is None:
            server.popen.terminate()
    for server in servers:
        server.stop(timeout)


def blade_command(*args: str) -> list[str]:
    """argv that runs the `blade` CLI with this interpreter."""
    return [sys.executable, "-m", "blade_pipeline.cli", *args]


@contextlib.contextmanager
def running(args: Sequence[str], port: int, log_path: Path, ready_path: str,
            env: dict | None = None) -> Iterator[ServerProcess]:
    """Context manager: a started ServerProcess, stopped on exit."""
    server = ServerProcess(list(args), port, log_path)
    server.start(ready_path, env=env)
    try:
        yield server
    finally:
        server.stop()
