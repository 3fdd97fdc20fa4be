"""The machine's PostgreSQL server (127.0.0.1:5432, user postgres, trust auth) for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from blade_pipeline.devservices.processes import ServerProcess, free_port

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def pg_answers() -> bool:
    """True when the PostgreSQL server on 127.0.0.1:5432 accepts connections."""
    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                         connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on 127.0.0.1:5432 (dropped on exit); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                             connect_timeout=5)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


#: argv prefix that runs a program as the ``postgres`` user when this process is root (the
#: server refuses to run as root), by exec: its pid is the program's own
_AS_POSTGRES = [sys.executable, "-c",
                "import os, pwd, sys\n"
                "if os.geteuid() == 0:\n"
                "    u = pwd.getpwnam('postgres'); os.setgroups([])\n"
                "    os.setgid(u.pw_gid); os.setuid(u.pw_uid)\n"
                "os.execv(sys.argv[1], sys.argv[1:])"]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    server = shutil.which("postgres")
    return Path(server).parent if server else None


@contextlib.contextmanager
def private_postgres() -> Iterator[ServerProcess]:
    """A PostgreSQL server of its own (a cluster in a new directory under the system's temp
    folder, which user postgres can reach — pytest's tmp_path it cannot; a free loopback
    port; user postgres, trust auth), for the cases that kill the server: the machine's
    shared one must stay up. Its process is the postmaster (restart:
    :func:`restart_private_postgres`); the cluster is removed on exit."""
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL's server binaries (initdb, postgres) are not installed")
    with tempfile.TemporaryDirectory(prefix="blade-pg-") as name:
        yield from _private_postgres(bin_dir, Path(name))


def _private_postgres(bin_dir: Path, directory: Path) -> Iterator[ServerProcess]:
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = directory / "data"
    subprocess.run([*_AS_POSTGRES, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    server = ServerProcess([*_AS_POSTGRES, str(bin_dir / "postgres"), "-D", str(data),
                            "-p", str(port), "-k", str(directory),
                            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                           port, directory / "server.log")
    server.start(None, timeout=60)
    _wait_for_logins(port)
    try:
        yield server
    finally:
        server.stop(timeout=30)


def _wait_for_logins(port: int, timeout: float = 60) -> None:
    """Until the server takes logins (it listens before its startup or recovery is done)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             connect_timeout=3).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def restart_private_postgres(server: ServerProcess, timeout: float = 60) -> ServerProcess:
    """Start a killed private server again: once its orphaned backends have seen the
    postmaster die and left the shared memory (until then the new postmaster refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        restarted = ServerProcess(server.args, server.port, server.log_path)
        try:
            restarted.start(None, timeout=30)
            _wait_for_logins(server.port)
            return restarted
        except RuntimeError:  # "pre-existing shared memory block is still in use"
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
