"""Durable SQLite store of catalog items (WAL, synchronous=FULL, one writer).

Upsert by ``item_id``: an unknown id is created (version 1); a known id with the same
``content_hash`` is unchanged; a different hash replaces the item and bumps its version.
With ``keep_newer`` an item whose stored ``last_modified`` is later than the upload's is left as
it is (``stale``): out-of-order or concurrent writers cannot replace a newer row with an older
one, since the comparison happens inside the write transaction.
A call to :meth:`CatalogStore.upsert` is one transaction, committed before it returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from blade_pipeline.devservices.catalog.validation import RecordTuple

log = logging.getLogger(__name__)
Status = Literal["created", "updated", "unchanged", "stale"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id        TEXT PRIMARY KEY,
    data_source    TEXT NOT NULL,
    data_type      TEXT,
    classification TEXT,
    content_hash   TEXT NOT NULL,
    version        INTEGER NOT NULL,
    last_modified  TEXT,
    item           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_source ON items (data_source, item_id);
"""
_COLUMNS = ("item_id, data_source, data_type, classification, content_hash, version, "
            "last_modified, item, created_at, updated_at")
_INSERT = f"INSERT INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE = ("UPDATE items SET data_source = ?, data_type = ?, classification = ?, content_hash = ?,"
           " version = ?, last_modified = ?, item = ?, updated_at = ? WHERE item_id = ?")
_IDS = "(SELECT value FROM json_each(?))"


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One row of the store."""

    item_id: str
    data_source: str
    data_type: str | None
    classification: str | None
    content_hash: str
    version: int
    last_modified: str | None
    item: str
    created_at: str
    updated_at: str


_CHECKPOINT_BYTES = 4 * 1024 * 1024
_CHECKPOINT_IDLE_S = 2.0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA page_size=16384")  # takes effect only on a new database; ~10% faster
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database file off the request path.

    The writer runs with ``wal_autocheckpoint=0``; durability does not depend on this thread
    (every commit fsyncs the WAL), it only keeps the WAL short. SQLite releases the GIL
    while it checkpoints, so this overlaps with request parsing.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(name="catalog-checkpointer", daemon=True)
        self._conn = _connect(path)
        self._wake = threading.Event()
        self._stopping = False
        self._pending = 0

    def written(self, nbytes: int) -> None:
        """Count bytes committed; wake the thread once enough have piled up."""
        self._pending += nbytes
        if self._pending >= _CHECKPOINT_BYTES:
            self._wake.set()

    def run(self) -> None:
        while not self._stopping:
            self._wake.wait(_CHECKPOINT_IDLE_S)
            self._wake.clear()
            if self._pending and not self._stopping:
                self._pending = 0
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed (will retry)")

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.join()
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()


class CatalogStore:
    """Thread-safe: one lock-guarded writer connection, one reader connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        self._writer.executescript(_SCHEMA)
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        self._checkpointer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    def upsert(self, data_source: str, records: Sequence[RecordTuple],
               keep_newer: bool = False) -> list[tuple[Status, int]]:
        """Apply ``records`` in order in one committed transaction.

        Returns ``(status, version)`` per record, status created/updated/unchanged (or stale:
        with ``keep_newer``, the stored item has a later ``last_modified`` and is kept)."""
        if not records:
            return []
        ids = json.dumps([r[0] for r in records])
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._apply(conn, data_source, records, ids, keep_newer)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._checkpointer.written(sum(len(r[5]) for r in records))
        return outcomes

    @staticmethod
    def _apply(conn: sqlite3.Connection, data_source: str, records: Sequence[RecordTuple],
               ids: str, keep_newer: bool) -> list[tuple[Status, int]]:
        current: dict[str, tuple[str, int]] = {}
        stamps: dict[str, str | None] = {}
        for item_id, content_hash, version, stamp in conn.execute(
                "SELECT item_id, content_hash, version, last_modified FROM items "
                f"WHERE item_id IN {_IDS}", (ids,)):
            current[item_id], stamps[item_id] = (content_hash, version), stamp
        existed = set(current)
        final: dict[str, tuple[RecordTuple, int]] = {}
        outcomes: list[tuple[Status, int]] = []
        append = outcomes.append
        for rec in records:
            item_id, content_hash = rec[0], rec[1]
            seen = current.get(item_id)
            status: Status
            if seen is None:
                version, status = 1, "created"
            elif seen[0] == content_hash:
                append(("unchanged", seen[1]))
                continue
            elif keep_newer and _later(stamps.get(item_id), rec[4]):
                append(("stale", seen[1]))
                continue
            else:
                version, status = seen[1] + 1, "updated"
            current[item_id], stamps[item_id] = (content_hash, version), rec[4]
            final[item_id] = (rec, version)
            append((status, version))
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        conn.executemany(_INSERT, [
            (item_id, data_source, data_type, classification, content_hash, version,
             last_modified, doc, now, now)
            for (item_id, content_hash, data_type, classification, last_modified, doc), version
            in final.values() if item_id not in existed
        ])
        conn.executemany(_UPDATE, [
            (data_source, data_type, classification, content_hash, version, last_modified,
             doc, now, item_id)
            for (item_id, content_hash, data_type, classification, last_modified, doc), version
            in final.values() if item_id in existed
        ])
        return outcomes

    def lookup(self, item_ids: Iterable[str]) -> dict[str, str]:
        """Current ``content_hash`` of each known id (unknown ids are left out)."""
        return {item_id: content_hash
                for item_id, content_hash, _ in self.lookup_with_last_modified(item_ids)}

    def lookup_with_last_modified(self, item_ids: Iterable[str]) -> list[tuple[str, str, str]]:
        """(item_id, content_hash, last_modified) of each known id."""
        rows = self._reader().execute(
            f"SELECT item_id, content_hash, last_modified FROM items WHERE item_id IN {_IDS}",
            (json.dumps(list(item_ids)),),
        )
        return rows.fetchall()

    def get(self, item_id: str) -> StoredItem | None:
        row = self._reader().execute(
            f"SELECT {_COLUMNS} FROM items WHERE item_id = ?", (item_id,)
        ).fetchone()
        return StoredItem(*row) if row else None

    def list(self, data_source: str | None, after: str | None, limit: int) -> list[StoredItem]:
        """Items ordered by id, strictly after ``after``, optionally of one data source."""
        where, args = ["item_id > ?"], [after or ""]
        if data_source is not None:
            where.append("data_source = ?")
            args.append(data_source)
        sql = (f"SELECT {_COLUMNS} FROM items WHERE {' AND '.join(where)} "
               "ORDER BY item_id LIMIT ?")
        return [StoredItem(*row) for row in self._reader().execute(sql, (*args, limit))]

    def stats(self) -> dict[str, int]:
        """Item count per data source."""
        rows = self._reader().execute(
            "SELECT data_source, count(*) FROM items GROUP BY data_source ORDER BY data_source"
        )
        return dict(rows.fetchall())

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()


def _later(stored: str | None, incoming: str | None) -> bool:
    """Whether ``stored`` is a later instant than ``incoming`` (naive stamps count as UTC)."""
    if not stored or not incoming:
        return False
    first, second = (datetime.fromisoformat(s) for s in (stored, incoming))
    first, second = (d if d.tzinfo else d.replace(tzinfo=UTC) for d in (first, second))
    return first > second
