"""The machine's MariaDB server (127.0.0.1:3306, root, empty password) for tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from blade_pipeline.devservices.processes import ServerProcess, free_port

MYSQL_SERVER = "mysql://root:@127.0.0.1:3306"


def _connect(port: int = 3306) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                           connect_timeout=3)


def mariadb_answers() -> bool:
    """True when the MariaDB server on 127.0.0.1:3306 accepts connections."""
    try:
        _connect().close()
        return True
    except pymysql.err.OperationalError:
        return False


@contextlib.contextmanager
def fresh_mysql_database(prefix: str) -> Iterator[str]:
    """A name for a new MySQL database (the seeder creates it; dropped on exit)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        db = _connect()
        try:
            db.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            db.close()


@contextlib.contextmanager
def private_mariadb(directory: Path) -> Iterator[ServerProcess]:
    """A MariaDB server of its own (data under ``directory``, a free loopback port, root with
    an empty password), for the cases that kill the server: the machine's shared one must
    stay up. Restart it with ``ServerProcess(server.args, server.port, server.log_path)``."""
    if not (shutil.which("mariadb-install-db") and shutil.which("mariadbd")):
        pytest.skip("MariaDB's server binaries (mariadb-install-db, mariadbd) are not installed")
    data = directory / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    server = ServerProcess(["mariadbd", "--no-defaults", f"--datadir={data}", f"--port={port}",
                            "--bind-address=127.0.0.1", f"--socket={directory / 'sock'}",
                            "--user=root", "--skip-log-bin", "--innodb-buffer-pool-size=64M"],
                           port, directory / "server.log")
    server.start(None, timeout=60)
    try:
        yield server
    finally:
        server.stop(timeout=30)
