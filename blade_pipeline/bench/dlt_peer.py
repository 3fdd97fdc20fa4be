"""The peer of `blade bench --source postgres`: dlt's ``sql_table`` of one PostgreSQL table to
Parquet files, timed. Run by the dlt venv's python (it imports dlt, never blade_pipeline):

    python dlt_peer.py '{"url", "schema", "table", "backend", "chunk_size", "out"}'

prints one JSON line: rows, seconds (extract + normalize + load), peak_rss_mb,
baseline_rss_mb, cpu_s.
"""

import json
import resource
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    cfg = json.loads(sys.argv[1])
    import dlt
    from dlt.sources.sql_database import sql_table

    baseline, cpu = _rss_mb(), _cpu_s()
    started = time.perf_counter()
    table = sql_table(credentials=cfg["url"], schema=cfg["schema"], table=cfg["table"],
                      backend=cfg["backend"], chunk_size=cfg["chunk_size"])
    pipeline = dlt.pipeline(pipeline_name=f"bench_{cfg['backend']}",
                            pipelines_dir=f"{cfg['out']}/pipelines",
                            destination=dlt.destinations.filesystem(f"{cfg['out']}/data"),
                            dataset_name="bench")
    pipeline.run(table, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts.get(cfg["table"], 0)
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": round(_rss_mb(), 1),
                      "baseline_rss_mb": round(baseline, 1),
                      "cpu_s": round(_cpu_s() - cpu, 3)}), flush=True)


if __name__ == "__main__":
    main()
