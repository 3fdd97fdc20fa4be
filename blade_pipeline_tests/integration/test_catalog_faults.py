"""Fault knobs of `blade mock-catalog` (--fail-first/--fail-rate/--fail-status/--retry-after/
--fault-seed/--latency-ms) and how CatalogClient rides them out."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from blade_pipeline.devservices.catalog.faults import FaultSettings
from blade_pipeline.devservices.catalog.server import create_app
from blade_pipeline.storage.catalog import CatalogUnavailableError
from blade_pipeline_tests.integration.catalog_fixtures import (
    CATALOG_TOKEN,
    catalog_service,
    client_for,
    make_items,
)

SOURCE = "BLADE:maintenance"
AUTH = {"Authorization": f"Bearer {CATALOG_TOKEN}"}
FAST_BACKOFF = {"backoff_base_s": 0.05, "backoff_max_s": 0.2}


def test_503_burst_is_retried_and_every_item_arrives_once(tmp_path: Path) -> None:
    items = make_items(300, prefix="BURST")
    with catalog_service(tmp_path, "--fail-first", "3", "--fail-status", "503") as server, \
            client_for(server, max_attempts=5, **FAST_BACKOFF) as client:
        result = client.upload_batch(items, SOURCE)
        assert (result.created, result.updated, result.unchanged, result.rejected) == \
            (300, 0, 0, [])
        page = client.list_items(SOURCE, limit=1000)
        assert [row["item_id"] for row in page["items"]] == items["item_id"].to_pylist()
        assert {row["version"] for row in page["items"]} == {1}
        assert client.stats()["total"] == 300
        logged = [line for line in server.log_text().splitlines() if "injected fault #" in line]
        assert len(logged) == 3 and all(line.startswith("INFO") for line in logged)


def test_429_with_retry_after_is_waited_out(tmp_path: Path) -> None:
    args = ("--fail-status", "429", "--retry-after", "1", "--fail-first", "1")
    with catalog_service(tmp_path, *args) as server, \
            client_for(server, **FAST_BACKOFF) as client:
        started = time.monotonic()
        result = client.upload_batch(make_items(10, prefix="RATE"), SOURCE)
        elapsed = time.monotonic() - started
        assert result.created == 10
        assert 0.9 <= elapsed < 10


def test_permanent_failure_raises_after_max_attempts_and_applies_nothing(
        tmp_path: Path) -> None:
    with catalog_service(tmp_path, "--fail-rate", "1.0") as server, \
            client_for(server, max_attempts=3, **FAST_BACKOFF) as client:
        with pytest.raises(CatalogUnavailableError, match="after 3 attempts") as caught:
            client.upload_batch(make_items(50, prefix="LOST"), SOURCE)
        assert caught.value.status == 503 and "injected" in str(caught.value)
        assert server.log_text().count("injected fault #") == 3

        answer = httpx.get(server.base_url + "/api/v1/items/LOST-0000000", headers=AUTH)
        assert answer.status_code == 503
        body = answer.json()
        assert body["error"] == "unavailable" and "injected fault" in body["reason"]
        assert "retry-after" not in answer.headers
        for _ in range(5):  # (d) liveness is never failed
            assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(server.base_url + "/api/v1/stats", headers=AUTH).json()["total"] == 0


async def _get_all(settings: FaultSettings, db: Path, paths: list[str]
                   ) -> list[tuple[int, float]]:
    """(status, seconds) of GET ``paths`` in order, against an in-process app."""
    app = create_app(db, CATALOG_TOKEN, faults=settings)
    out = []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://catalog", headers=AUTH) as http:
            for path in paths:
                started = time.monotonic()
                status = (await http.get(path)).status_code
                out.append((status, time.monotonic() - started))
    finally:
        app.state.store.close()
    return out


def _statuses(tmp_path: Path, settings: FaultSettings, n: int = 40) -> list[int]:
    db = Path(tempfile.mkdtemp(dir=tmp_path)) / "catalog.sqlite3"
    paths = [f"/api/v1/items/N-{i}" for i in range(n)]
    return [status for status, _ in asyncio.run(_get_all(settings, db, paths))]


def test_seeded_fail_rate_is_reproducible_and_fail_first_comes_first(tmp_path: Path) -> None:
    seeded = FaultSettings(fail_rate=0.5, fail_status=429, fail_first=2, seed=7)
    first = _statuses(tmp_path, seeded)
    assert first == _statuses(tmp_path, FaultSettings(fail_rate=0.5, fail_status=429,
                                                      fail_first=2, seed=7))
    assert first[:2] == [429, 429] and set(first) == {404, 429}
    assert 8 <= first[2:].count(429) <= 30
    assert first != _statuses(tmp_path, FaultSettings(fail_rate=0.5, fail_status=429,
                                                      fail_first=2, seed=8))


def test_latency_applies_to_items_but_not_to_healthz(tmp_path: Path) -> None:
    [(item, slow), (health, fast)] = asyncio.run(_get_all(
        FaultSettings(latency_ms=300), tmp_path / "c.sqlite3", ["/api/v1/items/X", "/healthz"]))
    assert (item, health) == (404, 200)
    assert slow >= 0.29 and fast < 0.25


@pytest.mark.parametrize("kwargs", [
    {"fail_rate": 1.5}, {"fail_rate": -0.1}, {"fail_status": 200}, {"fail_status": 600},
    {"retry_after_s": -1}, {"fail_first": -1}, {"latency_ms": -5},
])
def test_bad_fault_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaultSettings(**kwargs)
    assert not FaultSettings().active
