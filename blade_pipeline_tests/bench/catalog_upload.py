"""Catalog upload throughput: batch (NDJSON) and single-item (multipart) items/s.

    python -m blade_pipeline_tests.bench.catalog_upload --items 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from blade_pipeline.storage.catalog import BatchResult, CatalogClient, items_to_ndjson
from blade_pipeline_tests.integration.catalog_fixtures import (
    catalog_service,
    client_for,
    make_items,
)


def _upload_all(client: CatalogClient, items, batch_size: int, parallel: int) -> BatchResult:
    slices = [items.slice(o, batch_size) for o in range(0, items.num_rows, batch_size)]
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda s: client.upload_batch(s, "BLADE:maintenance"), slices))
    return sum(results, BatchResult())


def _timed(label: str, n: int, fn, server: psutil.Process | None = None) -> object:
    """Run ``fn``; print wall-clock items/s and, given the server process, its CPU per item
    (a figure that other load on a shared machine disturbs less than wall-clock time)."""
    cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    cpu = f"  server CPU {(sum(server.cpu_times()[:2]) - cpu0) / n * 1e6:5.1f} us/item" \
        if server else ""
    print(f"{label:<40} {n:>7} items {dt:6.2f} s {n / dt:>9,.0f} items/s{cpu}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=2, help="concurrent batch requests")
    parser.add_argument("--single", type=int, default=4_000, help="single-item uploads")
    args = parser.parse_args(argv)

    items = make_items(args.items)
    changed = make_items(args.items, revision=1)
    serial = make_items(args.items, prefix="SERIAL")
    singles = make_items(args.single, prefix="SINGLE").to_pylist()
    with tempfile.TemporaryDirectory() as tmp, catalog_service(Path(tmp)) as server:
        proc = psutil.Process(server.popen.pid)
        with client_for(server, max_connections=max(4, args.parallel)) as client:
            n = args.items
            payload = _timed("build NDJSON (client, vectorised)", n,
                             lambda: items_to_ndjson(items))
            print(f"  NDJSON {len(payload) / n:.0f} bytes/item")
            for label, table, key in [("batch upload, new items", items, "created"),
                                      ("batch re-upload, unchanged", items, "unchanged"),
                                      ("batch upload, changed (version+1)", changed, "updated")]:
                result = _timed(f"{label} (x{args.parallel})", n,
                                lambda t=table: _upload_all(client, t, args.batch_size,
                                                            args.parallel), proc)
                assert getattr(result, key) == n and not result.rejected, result
            _timed("batch upload, 1 connection", n, lambda: _upload_all(
                client, serial, args.batch_size, 1), proc)
            half = len(singles) // 2
            _timed("single-item upload (sequential)", half,
                   lambda: [client.upload_item(i) for i in singles[:half]], proc)
            with ThreadPoolExecutor(4) as pool:
                _timed("single-item upload (4 threads)", len(singles) - half,
                       lambda: list(pool.map(client.upload_item, singles[half:])), proc)
            stats = client.stats()
        print(f"catalog holds {stats['total']:,} items; "
              f"server RSS {proc.memory_info().rss / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
