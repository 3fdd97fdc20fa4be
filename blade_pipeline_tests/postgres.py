"""The machine's PostgreSQL server (127.0.0.1:5432, user postgres, trust auth) for tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg2

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
