"""Extract throughput: DatabricksWarehouse.stream_arrow through the connector vs DuckDB in-process.

    python -m blade_pipeline_tests.bench.warehouse_stream --rows 1000000 [--repeat 3]

Seeds a mock warehouse on a free loopback port, streams the whole maintenance table through the
real connector (cloud fetch), then stops the warehouse and reads the same DuckDB file directly
(DuckDB -> Arrow in one process): the ceiling for this step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.sources.databricks import DatabricksWarehouse

TABLE = "blade_maintenance_data"


def _timed_rows(batches) -> tuple[int, float]:
    started = time.perf_counter()
    rows = sum(b.num_rows for b in batches)
    return rows, time.perf_counter() - started


def run(rows: int, repeat: int, batch_rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "warehouse.duckdb"
        port = free_port()
        server = ServerProcess(
            blade_command("mock-warehouse", "--port", str(port), "--db", str(db),
                          "--rows", str(rows), "--token", "bench"),
            port, Path(tmp) / "warehouse.log")
        server.start("/healthz", timeout=600)
        try:
            warehouse = DatabricksWarehouse(
                url=f"http://127.0.0.1:{port}/sql/1.0/warehouses/bench", token="bench")
            connector = [_timed_rows(warehouse.stream_arrow(
                f"SELECT * FROM main.blade.{TABLE}", batch_rows=batch_rows))
                for _ in range(repeat)]
        finally:
            server.stop()
        con = duckdb.connect(str(db), read_only=True)
        ceiling = [_timed_rows(con.cursor().sql(f"SELECT * FROM blade.{TABLE}")
                               .to_arrow_reader(batch_rows)) for _ in range(repeat)]
        con.close()
    conn_rate = statistics.median(n / s for n, s in connector)
    ceil_rate = statistics.median(n / s for n, s in ceiling)
    return {"rows": rows, "batch_rows": batch_rows, "repeat": repeat,
            "connector_rows_per_s": round(conn_rate), "duckdb_rows_per_s": round(ceil_rate),
            "ratio": round(conn_rate / ceil_rate, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.repeat, args.batch_rows), indent=2))


if __name__ == "__main__":
    main()
