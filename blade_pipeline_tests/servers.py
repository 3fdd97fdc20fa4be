"""Test helpers to run the dev services as real subprocesses on free loopback ports."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from blade_pipeline.devservices.processes import (
    ServerProcess,
    blade_command,
    free_port,
    running,
)

__all__ = ["ServerProcess", "blade_command", "free_port", "running", "stored_items"]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def stored_items(catalog: ServerProcess, data_source: str) -> list[dict[str, Any]]:
    """Every item of ``data_source`` as the catalog's store holds it (``item_id``,
    ``content_hash``, ``version``), read from its SQLite file read-only: reading back what a
    deliberately slow catalog holds without paging through its API (120 pages of 1,000 items
    cost ~10 s; the API's own listing is tested on its own)."""
    uri = f"{Path(_option(catalog.args, '--db')).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        rows = con.execute("SELECT item_id, content_hash, version FROM items "
                           "WHERE data_source = ? ORDER BY item_id", (data_source,)).fetchall()
    return [{"item_id": i, "content_hash": h, "version": v} for i, h, v in rows]

