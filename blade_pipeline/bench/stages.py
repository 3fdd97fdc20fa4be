"""Bench stages, each run in its own child process so that its peak RSS is its own.

    python -m blade_pipeline.bench.stages <stage> '<json settings>'

prints one JSON line: {"stage", "rows", "seconds", "peak_rss_mb", "baseline_rss_mb", "cpu_s",
"server_cpu_s"}: ``cpu_s`` is this process's CPU time (every thread) while the clock runs,
``server_cpu_s`` what each server of ``server_pids`` spent meanwhile (the servers share the
machine's cores with the stage). Inputs a stage needs (raw rows, staged items) are prepared
before the clock starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blade_pipeline.config.sources import source_for
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.databricks import DatabricksWarehouse, preload_connector
from blade_pipeline.steps import extract, staging, uploading
from blade_pipeline.steps.items import IngestRun, ItemBuilder
from blade_pipeline.steps.validation import PartitionValidator
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each server has used so far: the process, its children that
    ended (a PostgreSQL connection's backend) and those that still run."""
    spent = {}
    for name, pid in pids.items():
        server = psutil.Process(pid)
        times = server.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in server.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # ended meanwhile: counted by its parent
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        spent[name] = total
    return spent


def _local_rows(cfg: dict) -> tuple[duckdb.DuckDBPyConnection, str]:
    """The bench's rows generated in-process (same generator, same parameters)."""
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, cfg["rows"], cfg["seed"], end=dt.date.fromisoformat(cfg["end"]),
                   days=1, schema="blade")
    return con, f"SELECT * FROM blade.{generator.TABLES[cfg['data_type']]}"


def _raw_batches(cfg: dict) -> list[pa.RecordBatch]:
    con, sql = _local_rows(cfg)
    return con.cursor().sql(sql).to_arrow_reader(cfg["batch_rows"]).read_all().to_batches(
        max_chunksize=cfg["batch_rows"])


def _warehouse(cfg: dict) -> DatabricksWarehouse:
    return DatabricksWarehouse(url=cfg["warehouse_url"], token=cfg["warehouse_token"])


def _catalog(cfg: dict) -> CatalogClient:
    return CatalogClient(base_url=cfg["catalog_url"], token=cfg["catalog_token"])


def _day(cfg: dict) -> str:
    return (dt.date.fromisoformat(cfg["end"]) - dt.timedelta(days=1)).isoformat()


def prepare_ceiling(cfg: dict, s3: bool = False) -> Callable[[], int]:
    """DuckDB -> Arrow -> Parquet, one file: on local disk, or (``s3``) streamed straight to
    an object of the loopback S3 API (what that server can absorb: the S3 stages' ceiling)."""
    con, sql = _local_rows(cfg)
    out: Any = Path(cfg["workdir"]) / "ceiling.parquet"
    filesystem = None
    if s3:
        lake = _lake(cfg, "ceiling", s3=True)
        filesystem, out = lake.filesystem, lake.path("ceiling.parquet")

    def run() -> int:
        reader = con.cursor().sql(sql).to_arrow_reader(cfg["batch_rows"])
        rows = 0
        with pq.ParquetWriter(out, reader.schema, compression="zstd",
                              filesystem=filesystem) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    return run


def prepare_extract(cfg: dict) -> Callable[[], int]:
    source = source_for(cfg["data_type"])
    preload_connector()  # what Dagster's resource setup does before a step runs

    def run() -> int:
        return sum(b.num_rows for b in extract.extract(
            _warehouse(cfg), source_sql.partition_rows(source), extract.day_bounds(_day(cfg)),
            cfg["batch_rows"]))
    return run


def prepare_transform(cfg: dict) -> Callable[[], int]:
    validator = PartitionValidator(source_for(cfg["data_type"]))
    batches = [validator.validate(b).valid for b in _raw_batches(cfg)]  # items come from these
    builder = ItemBuilder(source_for(cfg["data_type"]), IngestRun.now("bench"))
    return lambda: sum(builder.build(b).num_rows for b in batches)


def _duplicates(cfg: dict, batches: list[pa.RecordBatch]) -> pa.Table:
    """What the warehouse's duplicate-key query answers for these rows."""
    source = source_for(cfg["data_type"])
    pk, wm = source.primary_key, source.watermark_column
    counts = pa.Table.from_batches(batches).group_by(pk).aggregate([(wm, "max"), (pk, "count")])
    repeated = counts.filter(pc.and_(pc.greater(counts[f"{pk}_count"], 1),
                                     pc.is_valid(counts[pk])))
    return pa.table({"key": repeated[pk], "newest": repeated[f"{wm}_max"]})


def prepare_validate(cfg: dict) -> Callable[[], int]:
    batches = _raw_batches(cfg)
    duplicates = _duplicates(cfg, batches)

    def run() -> int:
        validator = PartitionValidator(source_for(cfg["data_type"]), duplicates)
        return sum(validator.validate(b).valid.num_rows for b in batches)
    return run


def _stage(cfg: dict, lake: ParquetLake) -> staging.StageResult:
    from blade_pipeline.bench.kinds import stage_day

    return stage_day(cfg, source_for(cfg["data_type"]), _warehouse(cfg), lake)


def _lake(cfg: dict, name: str, s3: bool = False) -> ParquetLake:
    """The lake ``name`` of this bench run: under the run's workdir, or (``s3``) under a prefix
    of the bench bucket on the loopback S3 API (``blade bench --lake s3``)."""
    if s3:
        return ParquetLake(uri=f"{cfg['s3_lake_uri']}/{name}", s3_endpoint=cfg["s3_endpoint"])
    return ParquetLake(uri=str(Path(cfg["workdir"]) / name))


def prepare_stage(cfg: dict, s3: bool = False) -> Callable[[], int]:
    lake = _lake(cfg, "lake", s3)
    lake.path()  # the filesystem (and, on S3, the bucket check) outside the clock
    preload_connector()  # what Dagster's resource setup does before a step runs
    return lambda: _stage(cfg, lake).extracted


def prepare_upload(cfg: dict) -> Callable[[], int]:
    """Upload the partition staged by the ``stage`` stage to an empty catalog."""
    lake = ParquetLake(uri=str(Path(cfg["workdir"]) / "lake"))
    source, day = source_for(cfg["data_type"]), _day(cfg)
    catalog = _catalog(cfg)
    items_dir = lake.partition_dir(source.data_type, day)
    footer = lake.footer_metadata(items_dir) or {}
    total = lake.parquet_file(items_dir).metadata.num_rows

    def run() -> int:
        checkpoint = uploading.Checkpoint(lake, lake.path("bench-checkpoint.json"),
                                       footer.get("staged_id", ""), total, catalog.batch_size)
        files = [uploading.StagedFile(day, items_dir, checkpoint)]
        progress = uploading.upload(lake, files, source, catalog)
        if progress.created + progress.updated != total:
            raise RuntimeError(f"upload incomplete: {progress.summary()}")
        return total
    return run


def _fresh_sqlite_instance(directory: Path):  # -> dg.DagsterInstance
    """An empty SQLite instance in ``directory``, like the demo's: the Dagster stages measure
    the instance's share of the time too."""
    import dagster as dg

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return dg.DagsterInstance.local_temp(str(directory),
                                         overrides={"telemetry": {"enabled": False}})


def prepare_materialize(cfg: dict, s3: bool = False) -> Callable[[], int]:
    """staged (with its blocking checks) + catalog through Dagster (``materialize``) on a
    SQLite instance, into a fresh catalog."""
    import dagster as dg

    from blade_pipeline.defs.assets import build_blade_assets

    source = source_for(cfg["data_type"])
    resources = {"warehouse": _warehouse(cfg),
                 "catalog": CatalogClient(base_url=cfg["catalog5_url" if s3 else "catalog2_url"],
                                          token=cfg["catalog_token"]),
                 "lake": _lake(cfg, "lake-dagster", s3)}

    instance_dir = Path(cfg["workdir"]) / ("dagster-materialize" + ("-s3" if s3 else ""))

    def run() -> int:
        instance = _fresh_sqlite_instance(instance_dir)
        result = dg.materialize(build_blade_assets(source, cfg["batch_rows"]),
                                partition_key=_day(cfg), resources=resources,
                                instance=instance)
        uploaded = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                    and e.asset_key and e.asset_key.path[-1] == "catalog"]
        if not result.success or not uploaded:
            checks = [(c.check_name, c.passed, c.description)
                      for c in result.get_asset_check_evaluations()]
            raise RuntimeError(f"materialization did not reach the catalog: {checks}")
        meta = uploaded[0].event_specific_data.materialization.metadata
        if meta["created"].value + meta["rejected"].value != meta["items_total"].value:
            raise RuntimeError(f"catalog upload incomplete: {meta}")
        return cfg["rows"]
    return run


def _range_runs(cfg: dict, warehouse_url: str, catalog_url: str, data_types: list[str],
                days: int) -> Callable[[], tuple[int, dict]]:
    """One range run per data type over the ``days`` days before ``end`` (what a backfill
    with BackfillPolicy.single_run launches): staged, catalog and every check of the code
    location (the blocking ones in the staged step, ``reconciled``, ``freshness``), on a
    SQLite instance like the demo's, into a fresh catalog; the catalog must receive every
    staged item. Reports the instance events each run wrote."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from blade_pipeline.defs.assets import build_blade_assets, build_source_checks

    end = dt.date.fromisoformat(cfg["end"])
    tags = {ASSET_PARTITION_RANGE_START_TAG: (end - dt.timedelta(days=days)).isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: (end - dt.timedelta(days=1)).isoformat()}
    resources = {"warehouse": DatabricksWarehouse(url=warehouse_url,
                                                  token=cfg["warehouse_token"]),
                 "catalog": CatalogClient(base_url=catalog_url, token=cfg["catalog_token"]),
                 "lake": ParquetLake(uri=str(Path(cfg["workdir"]) / f"lake-range-{days}"))}
    assets = {t: [*build_blade_assets(source_for(t), cfg["batch_rows"]),
                  *build_source_checks(source_for(t))] for t in data_types}
    preload_connector()
    instance_dir = Path(cfg["workdir"]) / f"dagster-range-{days}"

    def run() -> tuple[int, dict]:
        instance = _fresh_sqlite_instance(instance_dir)
        rows = items = 0
        for data_type in data_types:
            result = dg.materialize(assets[data_type], resources=resources, tags=tags,
                                    instance=instance, raise_on_error=False)
            events = [e.event_specific_data.materialization for e in result.all_events
                      if e.event_type_value == "ASSET_MATERIALIZATION"]
            staged = [m for m in events if m.asset_key.path[-1] == "staged"]
            uploaded = [m for m in events if m.asset_key.path[-1] == "catalog"]
            if not result.success or len(uploaded) != days:
                raise RuntimeError(f"range run of {data_type} did not reach the catalog: "
                                   f"{len(uploaded)} of {days} days")
            rows += staged[0].metadata["range_rows_extracted"].value
            valid = staged[0].metadata["range_rows_valid"].value
            sent = sum(m.metadata["uploaded"].value for m in uploaded)
            # a key held by two days of the range is uploaded once (its newest row)
            newer = sum(m.metadata["kept_newer_in_catalog"].value for m in uploaded)
            if sent + newer != valid:
                raise RuntimeError(f"{data_type}: {sent} items uploaded + {newer} older rows "
                                   f"of keys on two days, of {valid} staged")
            items += sent
        runs = instance.get_runs()
        events = [len(instance.get_records_for_run(r.run_id, limit=1_000_000).records)
                  for r in runs]
        return rows, {"runs": len(runs), "days": days * len(data_types), "items": items,
                      "instance_events_per_run": round(sum(events) / len(events)),
                      "instance": "sqlite"}
    return run


def prepare_backfill(cfg: dict) -> Callable[[], tuple[int, dict]]:
    """The bench's rows spread over ``backfill_days`` days, as one backfill (range run)."""
    return _range_runs(cfg, cfg["range_warehouse_url"], cfg["catalog3_url"],
                       [cfg["data_type"]], cfg["backfill_days"])


def prepare_backfill_small(cfg: dict) -> Callable[[], tuple[int, dict]]:
    """120 daily partitions of the demo's size (~27 rows a day): 30 days of each of the four
    data types, one range run each."""
    return _range_runs(cfg, cfg["small_warehouse_url"], cfg["catalog4_url"],
                       ["maintenance", "sortie", "supply", "readiness"], 30)


STAGES: dict[str, Callable[[dict], Callable[[], Any]]] = {
    "ceiling": prepare_ceiling, "extract": prepare_extract, "transform": prepare_transform,
    "validate": prepare_validate, "stage": prepare_stage, "upload": prepare_upload,
    "materialize": prepare_materialize, "backfill": prepare_backfill,
    "backfill_small": prepare_backfill_small,
    # --lake s3: the same stages with the lake on the loopback S3 API
    "ceiling_s3": lambda cfg: prepare_ceiling(cfg, s3=True),
    "stage_s3": lambda cfg: prepare_stage(cfg, s3=True),
    "materialize_s3": lambda cfg: prepare_materialize(cfg, s3=True),
}


def main() -> None:
    from blade_pipeline.bench import kinds, push

    stage, cfg = sys.argv[1], json.loads(sys.argv[2])
    run = {**STAGES, **kinds.STAGES, **push.STAGES}[stage](cfg)
    pids = cfg.get("server_pids", {})
    baseline = _rss_mb()
    servers_before, cpu_before = server_cpu_s(pids), _cpu_s()
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    extra: dict[str, Any] = {}
    if isinstance(rows, tuple):  # (rows, extra figures: runs launched, days, items)
        rows, extra = rows
    cpu, servers = _cpu_s() - cpu_before, server_cpu_s(pids)
    out: dict[str, Any] = {"stage": stage, "rows": rows, "seconds": seconds,
                           "peak_rss_mb": round(_rss_mb(), 1),
                           "baseline_rss_mb": round(baseline, 1), "cpu_s": round(cpu, 3),
                           "server_cpu_s": {name: round(servers[name] - servers_before[name], 3)
                                            for name in pids}, **extra}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
