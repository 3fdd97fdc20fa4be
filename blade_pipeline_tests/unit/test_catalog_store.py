"""SQLite store of the catalog service: upsert semantics, reads, durability settings."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blade_pipeline.devservices.catalog.store import CatalogStore

SOURCE = "BLADE:maintenance"


def rec(item_id: str, content_hash: str = "h1", doc: str = '{"data":{}}',
        last_modified: str = "2024-06-01T00:00:00Z") -> tuple:
    return (item_id, content_hash, "maintenance", "UNCLASS", last_modified, doc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    s = CatalogStore(tmp_path / "sub" / "catalog.sqlite3")
    yield s
    s.close()


def test_upsert_created_unchanged_updated(store: CatalogStore) -> None:
    assert store.upsert(SOURCE, [rec("A"), rec("B")]) == [("created", 1), ("created", 1)]
    assert store.upsert(SOURCE, [rec("A"), rec("B", "h2")]) == [("unchanged", 1), ("updated", 2)]
    b = store.get("B")
    assert b is not None and (b.version, b.content_hash) == (2, "h2")
    assert b.updated_at >= b.created_at


def test_duplicates_within_one_batch_apply_in_order(store: CatalogStore) -> None:
    outcomes = store.upsert(SOURCE, [rec("A"), rec("A"), rec("A", "h2"), rec("A", "h3")])
    assert outcomes == [("created", 1), ("unchanged", 1), ("updated", 2), ("updated", 3)]
    assert store.lookup(["A"]) == {"A": "h3"}
    assert store.get("A").version == 3  # type: ignore[union-attr]


def test_keep_newer_never_replaces_a_later_row(store: CatalogStore) -> None:
    store.upsert(SOURCE, [rec("A", "new", last_modified="2024-06-02T00:00:00+00:00")])
    older = [rec("A", "old", last_modified="2024-06-01T23:00:00"),  # naive = UTC
             rec("B", "b", last_modified="2024-06-01T00:00:00Z")]
    assert store.upsert(SOURCE, older, keep_newer=True) == [("stale", 1), ("created", 1)]
    assert store.lookup(["A"]) == {"A": "new"}
    later = rec("A", "newer", last_modified="2024-06-02T03:00:00+02:00")  # 01:00 UTC
    assert store.upsert(SOURCE, [later], keep_newer=True) == [("updated", 2)]
    assert store.upsert(SOURCE, [rec("A", "x", last_modified="2024-01-01T00:00:00Z")]) == \
        [("updated", 3)]  # without keep_newer: plain upsert by hash


def test_failed_transaction_applies_nothing(store: CatalogStore) -> None:
    store.upsert(SOURCE, [rec("A")])
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert(SOURCE, [rec("B"), ("C", None, None, None, None, "{}")])  # hash NOT NULL
    assert store.lookup(["A", "B", "C"]) == {"A": "h1"}
    assert store.upsert(SOURCE, [rec("B")]) == [("created", 1)]


def test_lookup_list_and_stats(store: CatalogStore) -> None:
    store.upsert(SOURCE, [rec(f"M-{i:03d}") for i in range(25)])
    store.upsert("BLADE:sortie", [rec(f"S-{i:03d}", "s") for i in range(5)])
    assert store.lookup(["M-001", "S-004", "nope"]) == {"M-001": "h1", "S-004": "s"}
    assert store.stats() == {SOURCE: 25, "BLADE:sortie": 5}
    seen, after = [], None
    while page := store.list(SOURCE, after, 10):
        seen += [r.item_id for r in page]
        after = page[-1].item_id
    assert seen == [f"M-{i:03d}" for i in range(25)]
    assert [r.item_id for r in store.list(None, "M-024", 3)] == ["S-000", "S-001", "S-002"]


def test_durability_settings_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = CatalogStore(path)
    first.upsert(SOURCE, [rec("A")])
    conn = first._writer
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    first.close()
    again = CatalogStore(path)
    try:
        assert again.lookup(["A"]) == {"A": "h1"}
    finally:
        again.close()


def test_concurrent_upserts_count_each_item_once(store: CatalogStore) -> None:
    batch = [rec(f"X-{i}") for i in range(500)]
    results: list[list[tuple[str, int]]] = []
    threads = [threading.Thread(target=lambda: results.append(store.upsert(SOURCE, batch)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [s for outcome in results for s, _ in outcome]
    assert statuses.count("created") == 500
    assert statuses.count("unchanged") == 500 * 7
    assert store.stats() == {SOURCE: 500}
