"""CatalogClient against the real catalog service, including a kill -9 of the server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from blade_pipeline.storage.catalog import (
    BatchResult,
    CatalogAuthError,
    CatalogClient,
    CatalogError,
    CatalogUnavailableError,
)
from blade_pipeline_tests.integration.catalog_fixtures import (
    CATALOG_TOKEN,
    catalog_args,
    catalog_service,
    client_for,
    make_items,
)
from blade_pipeline_tests.servers import ServerProcess, free_port

SOURCE = "BLADE:maintenance"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with catalog_service(tmp_path_factory.mktemp("catalog")) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[CatalogClient]:
    with client_for(server) as c:
        yield c


def test_single_item_round_trip(client: CatalogClient) -> None:
    row = make_items(1, prefix="CLI").to_pylist()[0]  # a row of the items table, as is
    assert client.healthy()
    created = client.upload_item(row)
    assert (created["status"], created["version"]) == ("created", 1)
    assert client.upload_item(row)["status"] == "unchanged"
    assert client.exists("CLI-0000000") and not client.exists("CLI-missing")
    stored = client.get("CLI-0000000")
    assert stored is not None
    assert stored["item"]["data"] == json.loads(row["data"])
    assert stored["item"]["last_modified"] == "2024-06-01T12:00:00+00:00"
    assert stored["dataSource"] == SOURCE and stored["content_hash"] == row["content_hash"]
    assert client.get("CLI-missing") is None


def test_batches_diff_and_rejections(server: ServerProcess) -> None:
    items = make_items(2500, prefix="CB")
    source = "TEST:client-batches"
    with client_for(server, batch_size=1000, lookup_chunk_size=700) as client:
        results = list(client.upload_batches(items, source))
        assert [(r.offset, r.created) for r in results] == [(0, 1000), (1000, 1000), (2000, 500)]
        known = client.lookup(items.column("item_id"))
        assert known == dict(zip(items["item_id"].to_pylist(),
                                 items["content_hash"].to_pylist(), strict=True))
        changed = make_items(10, prefix="CB", revision=7)
        broken = changed.set_column(2, "data", pa.array(['{"a": 1}'] * 9 + [None]))
        result = client.upload_batch(broken, source)
        assert (result.updated, result.items) == (9, 10)
        assert result.rejected == [{"line": 10, "item_id": "CB-0000009",
                                    "reason": "data: missing"}]
        assert client.stats()["data_sources"][source] == 2500
        page = client.list_items(source, after="CB-0002497", limit=5)
        assert [i["item_id"] for i in page["items"]] == ["CB-0002498", "CB-0002499"]


def test_wrong_token_is_fatal_and_secret(server: ServerProcess) -> None:
    secret = "not-the-token-0xdeadbeef"
    with client_for(server, token=secret) as client, pytest.raises(CatalogAuthError) as caught:
        client.stats()
    message = str(caught.value)
    assert "HTTP 403" in message and server.base_url + "/api/v1/stats" in message
    assert secret not in message and CATALOG_TOKEN not in message


def test_dead_service_fails_fast_after_retries() -> None:
    client = CatalogClient(base_url=f"http://127.0.0.1:{free_port()}", token="t",
                           max_attempts=3, backoff_base_s=0.05, connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(CatalogUnavailableError, match="after 3 attempts"):
        client.lookup(["X"])
    assert time.monotonic() - started < 5
    assert not client.healthy()


def test_resource_in_dagster_with_env_token(server: ServerProcess,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLADE_CATALOG_TOKEN", CATALOG_TOKEN)

    @dg.asset
    def uploaded(catalog: CatalogClient) -> dg.MaterializeResult:
        result = catalog.upload_batch(make_items(20, prefix="DG"), SOURCE)
        return dg.MaterializeResult(metadata={"created": result.created})

    resource = CatalogClient(base_url=server.base_url, token=dg.EnvVar("BLADE_CATALOG_TOKEN"))
    out = dg.materialize([uploaded], resources={"catalog": resource})
    assert out.success
    event = out.asset_materializations_for_node("uploaded")[0]
    assert event.metadata["created"].value == 20


@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_item(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "catalog.sqlite3"  # serve() creates the directory
    port = free_port()
    server = ServerProcess(catalog_args(db, port), port, tmp_path / "catalog.log")
    server.start("/healthz")
    acked: list[pa.Table] = []
    in_flight: list[pa.Table] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def upload_forever() -> None:
        with client_for(server, max_attempts=1) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                items = make_items(2000, start=n * 2000, prefix="K9")
                in_flight[:] = [items]
                try:
                    result = client.upload_batch(items, SOURCE)
                except CatalogError as exc:
                    errors.append(exc)
                    return
                assert result.created == 2000
                acked.append(items)

    worker = threading.Thread(target=upload_forever)
    try:
        worker.start()
        deadline = time.monotonic() + 20
        while len(acked) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.07)  # land the kill somewhere inside a request
        server.kill()
        worker.join(30)
        stop.set()
        assert len(acked) >= 5 and errors, "the upload loop should have died with the server"
        with catalog_service(tmp_path, db=db) as again, client_for(again) as client:
            expected = pa.concat_tables(acked)
            found = client.lookup(expected.column("item_id"))
            assert found == dict(zip(expected["item_id"].to_pylist(),
                                     expected["content_hash"].to_pylist(), strict=True))
            lost = in_flight[0]
            partial = client.lookup(lost.column("item_id"))
            assert len(partial) in (0, lost.num_rows), "a batch was half applied"
            total = client.stats()["total"]
            assert total == expected.num_rows + len(partial)
    finally:
        stop.set()
        server.kill()
        worker.join(5)


def test_batch_result_adds_up() -> None:
    a = BatchResult(1, 2, 3, [{"line": 1}], offset=10, items=7)
    b = BatchResult(4, 0, 1, [{"line": 2}], offset=20, items=5)
    total = a + b
    assert (total.created, total.updated, total.unchanged, total.items, total.offset) == \
        (5, 2, 4, 12, 10)
    assert total.rejected == [{"line": 1}, {"line": 2}] and total.accepted == 11
