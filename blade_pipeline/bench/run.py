"""`blade bench`: rows/s and peak RSS of every stage against the raw ceiling, in one run,
with the CPU seconds each stage and the servers it talks to spent.

Seeds a fresh mock warehouse (all rows in one daily partition) and fresh catalogs on free
loopback ports, then runs each stage in its own child process (see ``stages.py``):

    ceiling      DuckDB -> Arrow -> Parquet in one process, same rows (the raw ceiling)
    extract      warehouse -> connector (cloud fetch) -> Arrow batches
    transform    raw Arrow -> BLADE items (DuckDB to_json + sha256)
    validate     Pandera (polars) validation + duplicate keys
    stage        the staging path: extract -> validate -> transform -> Parquet (atomic)
    upload       staged items -> catalog (diff + NDJSON batches + checkpoints)
    materialize  staged (blocking checks in its step) + catalog through Dagster `materialize`
    backfill     the same rows over --backfill-days days (default 730), as one range run with
                 every check of the code location (its time vs materialize's is reported)
    backfill_small  120 daily partitions of the demo's size (4 data types x 30 days, ~27
                 rows a day), one range run per data type
    (the Dagster stages run on a SQLite instance, the demo's default; the range stages report
    the instance events each run wrote)

``--lake s3`` adds ``ceiling_s3``, ``stage_s3`` and ``materialize_s3``: the same stages with the
lake on a loopback S3 API (moto's server, started here; its CPU is counted with the servers'),
each reported as a ratio to its local-disk figure of the same run; ``ceiling_s3`` (the raw
Parquet stream to the S3 API) tells what that server can absorb on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from blade_pipeline.bench.push import P99_TARGET_MS, PUSH_STAGES, TARGETS, PushServers
from blade_pipeline.config.sources import SourcesFileError, source_for
from blade_pipeline.devservices.processes import ServerProcess, blade_command, free_port
from blade_pipeline.devservices.s3 import create_bucket, start_s3, use_loopback_credentials

STAGE_ORDER = ("ceiling", "extract", "transform", "validate", "stage", "upload", "materialize",
               "backfill", "backfill_small")
S3_STAGES = ("ceiling_s3", "stage_s3", "materialize_s3")  # --lake s3: each beside its local one
#: --source postgres | csv | push: the stages of that kind (bench/kinds.py, bench/push.py)
KIND_STAGES = {"postgres": ("ceiling", "stage_postgres", "dlt_pyarrow", "dlt_connectorx"),
               "csv": ("ceiling", "ceiling_csv", "land_csv", "stage_csv"),
               "push": PUSH_STAGES}
ALL_STAGES = tuple(dict.fromkeys((*STAGE_ORDER, *(s for k in KIND_STAGES.values() for s in k))))
#: the stages that read the mock Databricks warehouse (it is started only for them)
WAREHOUSE_STAGES = {"extract", "stage", "upload", "materialize", "stage_s3", "materialize_s3"}
BENCH_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/blade_bench"
SEED_POSTGRES = """import datetime, sys
from blade_pipeline.devservices.relational_seed import ensure_postgres_database, seed_postgres
url, rows, end, data_type = sys.argv[1:]
ensure_postgres_database(url)
seed_postgres(url, int(rows), 42, end=datetime.date.fromisoformat(end), days=1,
              data_types=[data_type])"""
SMALL_ROWS = 20_000  # the demo's warehouse: 20k rows a table over 730 days
END_DATE = "2026-06-30"
WAREHOUSE_TOKEN, CATALOG_TOKEN = "bench-warehouse", "bench-catalog"


def _server(args: list[str], port: int, log: Path, ready: str) -> ServerProcess:
    server = ServerProcess(args, port, log)
    server.start(ready, timeout=1200)
    return server


def _catalog(workdir: Path, name: str) -> ServerProcess:
    port = free_port()
    return _server(blade_command("mock-catalog", "--port", str(port), "--db",
                                 str(workdir / f"{name}.sqlite3"), "--token", CATALOG_TOKEN),
                   port, workdir / f"{name}.log", "/healthz")


def _run_stage(stage: str, cfg: dict) -> dict:
    from blade_pipeline.bench import kinds

    if stage in kinds.PEER_STAGES:  # dlt, in its own venv
        return kinds.run_dlt(cfg, stage.removeprefix("dlt_"))
    proc = subprocess.run(
        [sys.executable, "-m", "blade_pipeline.bench.stages", stage, json.dumps(cfg)],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench stage {stage} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warehouse(workdir: Path, name: str, rows: int, days: int) -> ServerProcess:
    port = free_port()
    return _server(
        blade_command("mock-warehouse", "--port", str(port), "--db",
                      str(workdir / f"{name}.duckdb"), "--rows", str(rows), "--days", str(days),
                      "--end-date", END_DATE, "--seed", "42", "--token", WAREHOUSE_TOKEN),
        port, workdir / f"{name}.log", "/healthz")


def run_bench(rows: int, data_type: str = "maintenance", batch_rows: int = 250_000,
              repeat: int = 1, stages: tuple[str, ...] = STAGE_ORDER,
              backfill_days: int = 730, lake: str = "local") -> dict:
    """Run every stage ``repeat`` times; return per-stage medians, ranges and ratios."""
    if lake == "s3":
        stages = (*stages, *(s for s in S3_STAGES if s.removesuffix("_s3") in stages))
    samples: dict[str, list[dict]] = {s: [] for s in stages}
    with tempfile.TemporaryDirectory(prefix="blade-bench-") as tmp:
        workdir = Path(tmp)
        warehouses = ({"warehouse": _warehouse(workdir, "warehouse", rows, 1)}
                      if WAREHOUSE_STAGES & set(stages) else {})
        kind_cfg = _prepare_kinds(stages, rows, data_type, workdir)
        s3: ServerProcess | None = None
        push = PushServers(workdir, data_type) if set(PUSH_STAGES) & set(stages) else None
        try:
            if lake == "s3":
                use_loopback_credentials()  # inherited by the stage processes
                s3 = start_s3(free_port(), workdir / "s3.log")
                warehouses["s3"] = s3  # stopped with the warehouses, CPU counted with them
            if "backfill" in stages:  # the same rows, spread over the days
                warehouses["range"] = _warehouse(workdir, "range", rows, backfill_days)
            if "backfill_small" in stages:
                warehouses["small"] = _warehouse(workdir, "small", SMALL_ROWS, 730)
            warehouse = warehouses.get("warehouse")
            for attempt in range(repeat):
                run_dir = workdir / f"run{attempt}"
                run_dir.mkdir()
                catalogs = [_catalog(run_dir, name)
                            for name in ("catalog", "catalog2", "catalog3", "catalog4",
                                         *(["catalog5"] if s3 else []))]
                cfg = {"rows": rows, "seed": 42, "end": END_DATE, "data_type": data_type,
                       "batch_rows": batch_rows, "workdir": str(run_dir), **kind_cfg,
                       "warehouse_url": _url(warehouse),
                       "warehouse_token": WAREHOUSE_TOKEN, "catalog_token": CATALOG_TOKEN,
                       "catalog_url": catalogs[0].base_url,
                       "catalog2_url": catalogs[1].base_url,
                       "catalog3_url": catalogs[2].base_url,
                       "catalog4_url": catalogs[3].base_url, "backfill_days": backfill_days,
                       "catalog5_url": catalogs[4].base_url if s3 else "",
                       "s3_endpoint": s3.base_url if s3 else "",
                       "s3_lake_uri": create_bucket(s3, f"bench-{attempt}") if s3 else "",
                       "range_warehouse_url": _url(warehouses.get("range")),
                       "small_warehouse_url": _url(warehouses.get("small")),
                       **(push.cfg() if push else {}),
                       "server_pids": {
                           **kind_cfg.get("server_pids", {}),
                           **(push.pids() if push else {}),
                           **{name: w.popen.pid for name, w in warehouses.items()},
                           **{f"catalog{i + 1}": c.popen.pid for i, c in enumerate(catalogs)}}}
                try:
                    for stage in stages:
                        samples[stage].append(_run_stage(stage, cfg))
                finally:
                    for catalog in catalogs:
                        catalog.stop()
        finally:
            for server in warehouses.values():
                server.stop()
            if push:
                push.stop()
    return summarize(samples, rows, data_type, batch_rows, repeat)


def _prepare_kinds(stages: tuple[str, ...], rows: int, data_type: str, workdir: Path) -> dict:
    """What the stages of other kinds need: the bench's rows in PostgreSQL
    (``BLADE_BENCH_POSTGRES_URL``, default the machine's ``blade_bench`` database), in one
    day as in the warehouse; dlt's venv (``BLADE_BENCH_DLT_PYTHON``, or created once under
    ``BLADE_BENCH_HOME``, default ``.blade/bench``); the rows as one CSV file."""
    import os

    from blade_pipeline.bench import kinds

    cfg: dict = {}
    if {"stage_postgres", *kinds.PEER_STAGES} & set(stages):
        url = os.environ.get("BLADE_BENCH_POSTGRES_URL") or BENCH_POSTGRES_URL
        # seeded in a child process: this one stays small, and a stage's peak RSS is its own
        # (Linux carries the parent's peak RSS into a forked child)
        subprocess.run([sys.executable, "-c", SEED_POSTGRES, url, str(rows), END_DATE,
                        data_type], check=True)
        cfg["postgres_url"] = url
        pid = kinds.local_server_pid(url)
        cfg["server_pids"] = {"postgres": pid} if pid else {}
    if {"ceiling_csv", "land_csv", "stage_csv"} & set(stages):
        cfg["csv_path"] = str(workdir / "bench.csv")
        subprocess.run([sys.executable, "-m", "blade_pipeline.bench.kinds", json.dumps(
            {"rows": rows, "seed": 42, "end": END_DATE, "data_type": data_type}),
            cfg["csv_path"]], check=True)
    if set(kinds.PEER_STAGES) & set(stages):
        cfg["dlt_python"] = kinds.dlt_python(
            Path(os.environ.get("BLADE_BENCH_HOME") or ".blade/bench").resolve())
    return cfg


def _url(server: ServerProcess | None) -> str:
    return f"{server.base_url}/sql/1.0/warehouses/bench" if server else ""


def summarize(samples: dict[str, list[dict]], rows: int, data_type: str, batch_rows: int,
              repeat: int) -> dict:
    result: dict = {"rows": rows, "data_type": data_type, "batch_rows": batch_rows,
                    "repeat": repeat, "stages": {}}
    ceiling = None
    for stage, runs in samples.items():
        rates = [r["rows"] / r["seconds"] for r in runs]
        entry = {"rows_per_s": round(statistics.median(rates)),
                 "rows_per_s_min": round(min(rates)), "rows_per_s_max": round(max(rates)),
                 "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                 "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                 "baseline_rss_mb": max(r["baseline_rss_mb"] for r in runs),
                 # what the measured work itself added (inputs prepared before the clock are
                 # in the baseline: the ceiling generates its tables in-process)
                 "added_rss_mb": round(max(r["peak_rss_mb"] - r["baseline_rss_mb"]
                                           for r in runs), 1),
                 # CPU seconds of the stage's process and of the servers it talked to (the
                 # mock warehouse and catalogs run on the same cores), medians
                 "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
                 "server_cpu_s": round(statistics.median(
                     sum(r["server_cpu_s"].values()) for r in runs), 2)}
        if "p99_ms" in runs[0]:  # ack latency: the medians of the runs' percentiles
            entry["p50_ms"] = round(statistics.median(r["p50_ms"] for r in runs), 2)
            entry["p99_ms"] = round(statistics.median(r["p99_ms"] for r in runs), 2)
        if "runs" in runs[0]:  # range runs: how many Dagster runs did the work
            entry["runs"] = runs[0]["runs"]
            entry["days"] = runs[0]["days"]
            entry["seconds_per_run"] = round(entry["seconds"] / entry["runs"], 3)
            entry["instance_events_per_run"] = runs[0].get("instance_events_per_run")
        if stage == "ceiling" or (stage == "push_ceiling" and "ceiling" not in samples):
            ceiling = entry  # (push stages: the log's own rate, when no Databricks ceiling)
        result["stages"][stage] = entry
    for stage, entry in result["stages"].items():
        local = result["stages"].get(stage.removesuffix("_s3"))
        if stage.endswith("_s3") and local:
            entry["ratio_to_local"] = round(entry["rows_per_s"] / local["rows_per_s"], 3)
            if stage != "ceiling_s3" and (s3_ceiling := result["stages"].get("ceiling_s3")):
                entry["ratio_to_s3_ceiling"] = round(
                    entry["rows_per_s"] / s3_ceiling["rows_per_s"], 3)
        fastest_dlt = max((result["stages"][s]["rows_per_s"] for s in ("dlt_pyarrow",
                          "dlt_connectorx") if s in result["stages"]), default=0)
        if stage == "stage_postgres" and fastest_dlt:
            entry["ratio_to_dlt_fastest"] = round(entry["rows_per_s"] / fastest_dlt, 2)
        if stage in {"land_csv", "stage_csv"} and "ceiling_csv" in result["stages"]:
            entry["ratio_to_ceiling_csv"] = round(
                entry["rows_per_s"] / result["stages"]["ceiling_csv"]["rows_per_s"], 3)
        if stage.startswith("push_") and stage not in ("push_ceiling", "push_latency") and (
                push_ceiling := result["stages"].get("push_ceiling")):
            entry["ratio_to_push_ceiling"] = round(
                entry["rows_per_s"] / push_ceiling["rows_per_s"], 3)
        if stage in TARGETS:
            entry["target_rows_per_s"] = TARGETS[stage]
        if stage == "backfill" and "materialize" in result["stages"]:
            entry["seconds_vs_materialize"] = round(
                entry["seconds"] / result["stages"]["materialize"]["seconds"], 2)
        if ceiling:
            # 3 significant digits: a Dagster stage of a small run is 1e-4 of the ceiling
            entry["ratio_to_ceiling"] = float(f"{entry['rows_per_s'] / ceiling['rows_per_s']:.3g}")
            entry["rss_ratio_to_ceiling"] = round(entry["peak_rss_mb"] / ceiling["peak_rss_mb"],
                                                  2)
            entry["added_rss_ratio_to_ceiling"] = round(
                entry["added_rss_mb"] / max(ceiling["added_rss_mb"], 1.0), 2)
    return result


def format_table(result: dict) -> str:
    lines = [f"blade bench: {result['rows']:,} {result['data_type']} rows, batch "
             f"{result['batch_rows']:,}, repeat {result['repeat']}",
             f"{'stage':<12} {'rows/s (median)':>16} {'min-max':>21} {'vs ceiling':>10} "
             f"{'peak RSS MB':>12} {'RSS vs ceiling':>14} {'added MB':>9} {'vs ceiling':>10} "
             f"{'CPU s':>7} {'server CPU s':>12}"]
    for stage, e in result["stages"].items():
        lines.append(
            f"{stage:<12} {e['rows_per_s']:>16,} "
            f"{e['rows_per_s_min']:>10,}-{e['rows_per_s_max']:<10,} "
            f"{e.get('ratio_to_ceiling', 0):>10.3f} {e['peak_rss_mb']:>12.0f} "
            f"{e.get('rss_ratio_to_ceiling', 0):>14.2f} {e['added_rss_mb']:>9.0f} "
            f"{e.get('added_rss_ratio_to_ceiling', 0):>10.2f} {e['cpu_s']:>7.2f} "
            f"{e['server_cpu_s']:>12.2f}")
    for stage, e in result["stages"].items():
        if "ratio_to_local" in e:
            lines.append(f"{stage}: {e['ratio_to_local']:.2f}x the rows/s of "
                         f"{stage.removesuffix('_s3')} on local disk (same run)"
                         + (f", {e['ratio_to_s3_ceiling']:.3f} of ceiling_s3"
                            if "ratio_to_s3_ceiling" in e else ""))
        if "ratio_to_dlt_fastest" in e:
            lines.append(f"{stage}: {e['ratio_to_dlt_fastest']:.2f}x the rows/s of dlt's "
                         "fastest backend (same table, same run; ours also validates, hashes "
                         "and builds items)")
        if "ratio_to_ceiling_csv" in e:
            lines.append(f"{stage}: {e['ratio_to_ceiling_csv']:.3f} of ceiling_csv (pyarrow.csv "
                         "-> Parquet of the same file)")
        if "ratio_to_push_ceiling" in e:
            lines.append(f"{stage}: {e['ratio_to_push_ceiling']:.3f} of push_ceiling (the same "
                         "batches published straight to JetStream)"
                         + (f"; target {e['target_rows_per_s']:,} records/s: "
                            f"{'met' if e['rows_per_s'] >= e['target_rows_per_s'] else 'MISSED'}"
                            if "target_rows_per_s" in e else ""))
        if "p99_ms" in e:
            lines.append(f"{stage}: ack latency p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} "
                         f"ms (1,000-record batches, one at a time; target p99 <= "
                         f"{P99_TARGET_MS:.0f} ms: "
                         f"{'met' if e['p99_ms'] <= P99_TARGET_MS else 'MISSED'})")
        if "runs" in e:
            lines.append(f"{stage}: {e['days']} daily partitions in {e['runs']} run(s), "
                         f"{e['seconds']:.1f} s wall, {e['seconds_per_run']:.2f} s per run, "
                         f"{e['instance_events_per_run']} instance events per run"
                         + (f"; {e['seconds_vs_materialize']:.2f}x the one-partition "
                            "materialize of the same rows" if "seconds_vs_materialize" in e
                            else ""))
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="blade bench", description=__doc__)
    parser.add_argument("--rows", type=_positive_int, default=1_000_000,
                        help="rows in the partition")
    parser.add_argument("--data-type", default="maintenance", help="a data type of sources.yaml")
    parser.add_argument("--batch-rows", type=_positive_int, default=250_000)
    parser.add_argument("--repeat", type=_positive_int, default=1,
                        help="runs; median and min-max shown")
    parser.add_argument("--source", choices=["databricks", *KIND_STAGES], default="databricks",
                        help="postgres: our staging from PostgreSQL against dlt's sql_table "
                             "(pyarrow and connectorx backends, dlt in its own venv); csv: "
                             "landing and staging a CSV file against a pyarrow.csv -> Parquet "
                             "copy; push: the ingest API's acknowledged records/s, ack "
                             "latency and client -> lake / catalog rates (NATS at "
                             "BLADE_NATS_URL). Default: the Databricks stages")
    parser.add_argument("--stages", default=None,
                        help="comma-separated subset of: " + ", ".join(ALL_STAGES)
                             + " (default: every stage of --source)")
    parser.add_argument("--backfill-days", type=_positive_int, default=730,
                        help="days the backfill stage spreads the rows over")
    parser.add_argument("--lake", choices=["local", "s3"], default="local",
                        help="s3: also run stage and materialize with the lake on a loopback "
                             "S3 API (moto's server), as ratios to local disk")
    parser.add_argument("--out", help="write the JSON result here")
    return parser


def main(args: argparse.Namespace) -> int:
    default = STAGE_ORDER if args.source == "databricks" else KIND_STAGES[args.source]
    stages = (tuple(s.strip() for s in args.stages.split(",") if s.strip()) if args.stages
              else default)
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown:
        print(f"unknown stage(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        source_for(args.data_type)
    except SourcesFileError as exc:
        print(f"blade bench: {exc}", file=sys.stderr)
        return 2
    result = run_bench(args.rows, args.data_type, args.batch_rows, args.repeat, stages,
                       args.backfill_days, args.lake)
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
