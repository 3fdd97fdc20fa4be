"""Bench stages, each run in its own child process so that its peak RSS is its own.

    python -m blade_pipeline.bench.stages <stage> '<json settings>'

prints one JSON line: {"stage", "rows", "seconds", "peak_rss_mb", "baseline_rss_mb", "cpu_s",
"server_cpu_s"}: ``cpu_s`` is this process's CPU time (every thread) while the clock runs,
``server_cpu_s`` what each server of ``server_pids`` spent meanwhile (the servers share the
machine's cores with the stage). Inputs a stage needs (raw rows, staged items) are prepared
before the clock starts. A stage that times several paths itself (``item_json``) reports the
rows and ``seconds`` of its headline path and its figures per path under ``paths``.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import polars as pl
import polars_hash as plh
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blade_pipeline import ingest, item_json, staging
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.items import (
    DUCKDB_CHUNK_ROWS,
    ITEM_SCHEMA,
    KEEP_COLUMN,
    IngestRun,
    ItemBuilder,
    _chunked,
    _ident,
    item_sql,
)
from blade_pipeline.resources.catalog import CatalogClient
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.resources.warehouse import DatabricksWarehouse, preload_connector
from blade_pipeline.sources import source_for
from blade_pipeline.validation import PartitionValidator


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each server process has used so far."""
    spent = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        spent[name] = times.user + times.system
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


def prepare_ceiling(cfg: dict) -> Callable[[], int]:
    con, sql = _local_rows(cfg)
    out = Path(cfg["workdir"]) / "ceiling.parquet"

    def run() -> int:
        reader = con.cursor().sql(sql).to_arrow_reader(cfg["batch_rows"])
        rows = 0
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    return run


def prepare_extract(cfg: dict) -> Callable[[], int]:
    source = source_for(cfg["data_type"])
    preload_connector()  # what Dagster's resource setup does before a step runs

    def run() -> int:
        return sum(b.num_rows for b in ingest.extract(
            _warehouse(cfg), ingest.partition_sql(source), ingest.day_bounds(_day(cfg)),
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


def _stage(cfg: dict, lake: ParquetLake) -> ingest.StageResult:
    source, day = source_for(cfg["data_type"]), _day(cfg)
    warehouse, sql, bounds = _warehouse(cfg), ingest.partition_sql(source), ingest.day_bounds(day)
    duplicates = ingest.duplicate_keys(warehouse, source, sql, bounds)
    batches = ingest.extract(warehouse, sql, bounds, cfg["batch_rows"])
    return ingest.stage(source, batches, lake, lake.partition_dir(source.data_type, day),
                        lake.partition_dir(source.data_type, day, "quarantine"),
                        IngestRun.now("bench"), duplicates=duplicates)


def prepare_stage(cfg: dict) -> Callable[[], int]:
    lake = ParquetLake(uri=str(Path(cfg["workdir"]) / "lake"))
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
        checkpoint = ingest.Checkpoint(lake, lake.path("bench-checkpoint.json"),
                                       footer.get("staged_id", ""), total, catalog.batch_size)
        files = [ingest.StagedFile(day, items_dir, checkpoint)]
        progress = ingest.upload(lake, files, source, catalog)
        if progress.created + progress.updated != total:
            raise RuntimeError(f"upload incomplete: {progress.summary()}")
        return total
    return run


def prepare_materialize(cfg: dict) -> Callable[[], int]:
    """staged + checks + catalog through Dagster (``materialize``) into a fresh catalog."""
    import dagster as dg

    from blade_pipeline.assets import build_blade_assets

    source = source_for(cfg["data_type"])
    resources = {"warehouse": _warehouse(cfg),
                 "catalog": CatalogClient(base_url=cfg["catalog2_url"],
                                          token=cfg["catalog_token"]),
                 "lake": ParquetLake(uri=str(Path(cfg["workdir"]) / "lake-dagster"))}

    def run() -> int:
        result = dg.materialize(build_blade_assets(source, cfg["batch_rows"]),
                                partition_key=_day(cfg), resources=resources,
                                instance=dg.DagsterInstance.ephemeral())
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
    with BackfillPolicy.single_run launches), staged + checks + catalog, into a fresh
    catalog; the catalog must receive every staged item."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from blade_pipeline.assets import build_blade_assets

    end = dt.date.fromisoformat(cfg["end"])
    tags = {ASSET_PARTITION_RANGE_START_TAG: (end - dt.timedelta(days=days)).isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: (end - dt.timedelta(days=1)).isoformat()}
    resources = {"warehouse": DatabricksWarehouse(url=warehouse_url,
                                                  token=cfg["warehouse_token"]),
                 "catalog": CatalogClient(base_url=catalog_url, token=cfg["catalog_token"]),
                 "lake": ParquetLake(uri=str(Path(cfg["workdir"]) / f"lake-range-{days}"))}
    assets = {t: build_blade_assets(source_for(t), cfg["batch_rows"]) for t in data_types}
    preload_connector()

    def run() -> tuple[int, dict]:
        instance = dg.DagsterInstance.ephemeral()
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
        return rows, {"runs": len(instance.get_runs()), "days": days * len(data_types),
                      "items": items}
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


# ---- item_json: the native kernel against the library paths ---------------------------------
ITEM_JSON_TYPES = ("maintenance", "sortie", "supply", "readiness")
ITEM_JSON_TRANSFORM_ROWS = 250_000  # per data type, at most: the transform paths' input
ITEM_JSON_ROUNDS = 5  # every path once a round, in rotated order; medians reported
ITEM_JSON_STAGE_ROUND_ROWS = 250_000  # partitions above this are staged one round only


def polars_encode(raw: pa.RecordBatch, keep: pa.BooleanArray | None
                  ) -> tuple[pa.Array, pa.Array]:
    """``(data, content_hash)`` by polars: ``struct.json_encode`` of the sorted columns and
    polars-hash's sha256 (its bytes differ from DuckDB's for some types: see ``paths``)."""
    frame = pl.from_arrow(raw)
    if keep is not None:
        frame = frame.filter(pl.Series(keep))
    out = (frame.lazy()
           .select(pl.struct(sorted(frame.columns)).struct.json_encode().alias("data"))
           .with_columns(plh.col("data").chash.sha2_256().alias("content_hash"))
           .collect())
    return out["data"].to_arrow(), out["content_hash"].to_arrow()


class PolarsItemBuilder(ItemBuilder):
    """Items whose ``data`` and ``content_hash`` polars writes (other columns as the kernel
    path: Arrow compute)."""

    def _encode(self, raw: pa.RecordBatch, keep: pa.BooleanArray | None
                ) -> tuple[pa.Array, pa.Array]:
        return polars_encode(raw, keep)


class DuckDBHashItemBuilder(ItemBuilder):
    """Items written by DuckDB alone: ``to_json`` and DuckDB's own ``sha256``."""

    def build(self, raw: pa.RecordBatch | pa.Table, keep: pa.BooleanArray | None = None
              ) -> pa.Table:
        if keep is not None:
            raw = raw.append_column(KEEP_COLUMN, keep)
        con = self._con()
        con.register("raw", _chunked(raw, DUCKDB_CHUNK_ROWS))
        try:
            sql = (f"SELECT *, sha256(data) AS content_hash FROM "
                   f"({item_sql(self.source, raw.schema.names)})")
            table = con.sql(sql, params=self.params).to_arrow_table()
        finally:
            con.unregister("raw")
        return table.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA)


#: path -> item builder factory; "duckdb" is what production does without the kernel
ITEM_JSON_PATHS: dict[str, Callable[..., ItemBuilder]] = {
    "kernel": ItemBuilder,
    "duckdb": lambda source, run: ItemBuilder(source, run, use_kernel=False),
    "duckdb_sha256": DuckDBHashItemBuilder,
    "polars": PolarsItemBuilder,
}


def _timed(fn: Callable[[], int], pids: dict[str, int]) -> dict[str, float]:
    servers, cpu, started = _server_cpu_s(pids), _cpu_s(), time.perf_counter()
    rows = fn()
    seconds = time.perf_counter() - started
    server_cpu = sum(_server_cpu_s(pids).values()) - sum(servers.values())
    return {"rows": rows, "seconds": seconds, "cpu_s": _cpu_s() - cpu, "server_cpu_s": server_cpu}


def _rounds(runs: dict[str, Callable[[], int]], rounds: int, pids: dict[str, int]
            ) -> dict[str, dict[str, float]]:
    """Every path of ``runs`` once a round (round r starts at path r: no path always runs
    first or right after another one); rows/s median and range, CPU-s median."""
    names, samples = list(runs), {name: [] for name in runs}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(_timed(runs[name], pids))
    out = {}
    for name, runs_of in samples.items():
        rates = [s["rows"] / s["seconds"] for s in runs_of]
        out[name] = {"rows": runs_of[0]["rows"],
                     "seconds": round(statistics.median(s["seconds"] for s in runs_of), 4),
                     "rows_per_s": round(statistics.median(rates)),
                     "rows_per_s_min": round(min(rates)), "rows_per_s_max": round(max(rates)),
                     "cpu_s": round(statistics.median(s["cpu_s"] for s in runs_of), 3),
                     "server_cpu_s": round(statistics.median(s["server_cpu_s"]
                                                             for s in runs_of), 3)}
    return out


def _json_values(table: pa.Table, column: str, con: duckdb.DuckDBPyConnection
                 ) -> tuple[list[str], list[str]]:
    """One column's JSON value text per row, as DuckDB's to_json and polars write it."""
    prefix = len(json.dumps(column)) + 2  # {"name":
    con.register("one", table.select([column]))
    try:
        duck = [r[0] for r in con.sql(f"SELECT CAST(to_json(struct_pack({_ident(column)} := "
                                      f"{_ident(column)})) AS VARCHAR) FROM one").fetchall()]
    finally:
        con.unregister("one")
    polars = pl.from_arrow(table.select([column])).select(
        pl.struct([column]).struct.json_encode()).to_series().to_list()
    return [t[prefix:-1] for t in duck], [t[prefix:-1] for t in polars]


def _bytes_check(batches: list[pa.RecordBatch], builders: dict[str, ItemBuilder]) -> dict:
    """Whether each path writes the kernel's bytes; where polars' differ from DuckDB's, by
    column (type, rows, first example)."""
    kernel = pa.concat_tables(builders["kernel"].build(b) for b in batches)
    same = {}
    for name, builder in builders.items():
        if name != "kernel":
            items = pa.concat_tables(builder.build(b) for b in batches)
            same[name] = {col: items[col].equals(kernel[col]) for col in ("data", "content_hash")}
    table, con, differs = pa.Table.from_batches(batches), duckdb.connect(), []
    for column in sorted(table.column_names):
        duck, polars = _json_values(table, column, con)
        diff = [i for i, (a, b) in enumerate(zip(duck, polars, strict=True)) if a != b]
        if diff:
            differs.append({"column": column, "type": str(table.schema.field(column).type),
                            "rows": len(diff), "of": table.num_rows,
                            "duckdb": duck[diff[0]], "polars": polars[diff[0]]})
    whole = pa.concat_tables(builders["polars"].build(b) for b in batches)["data"]
    rows_differ = pc.sum(pc.invert(pc.equal(whole.cast(pa.string()),
                                            kernel["data"]))).as_py() or 0
    return {"same_bytes_as_kernel": same, "polars_rows_differ": rows_differ,
            "polars_differs": differs}


def _ratios(figures: dict[str, dict]) -> dict[str, dict[str, float]]:
    """kernel rows/s over each library path's, and each path's CPU-s over the kernel's."""
    kernel = figures["kernel"]
    return {name: {"speed": round(kernel["rows_per_s"] / f["rows_per_s"], 3),
                   "cpu": round(f["cpu_s"] / kernel["cpu_s"], 3) if kernel["cpu_s"] else 0.0}
            for name, f in figures.items() if name != "kernel"}


def prepare_item_json(cfg: dict) -> Callable[[], tuple[int, dict]]:
    """For each of the four data types, in one process: transform rows/s of every path of
    :data:`ITEM_JSON_PATHS` (valid in-process rows, at most ``ITEM_JSON_TRANSFORM_ROWS``) and
    the staging path (as the ``stage`` stage: warehouse -> Parquet) with each of them. The
    headline rows/s is the kernel's staging path over the four types."""
    if not item_json.available():
        raise RuntimeError(item_json.NOT_BUILT)
    preload_connector()
    con, _ = _local_rows({**cfg, "rows": min(cfg["rows"], ITEM_JSON_TRANSFORM_ROWS)})
    run_id, pids = IngestRun.now("bench"), cfg.get("server_pids", {})
    inputs = {}
    for data_type in ITEM_JSON_TYPES:
        source = source_for(data_type)
        reader = con.cursor().sql(f"SELECT * FROM blade.{generator.TABLES[data_type]}"
                                  ).to_arrow_reader(cfg["batch_rows"])
        validator = PartitionValidator(source)
        batches = [validator.validate(b).valid
                   for b in reader.read_all().to_batches(max_chunksize=cfg["batch_rows"])]
        builders = {name: make(source, run_id) for name, make in ITEM_JSON_PATHS.items()}
        for builder in builders.values():  # connections, thread pools: before the clock
            builder.build(batches[0].slice(0, 1000))
        inputs[data_type] = batches, builders, _bytes_check(batches, builders)
    con.close()

    def transform(builder: ItemBuilder, batches: list[pa.RecordBatch]) -> Callable[[], int]:
        return lambda: sum(builder.build(b).num_rows for b in batches)

    def stage(data_type: str, path: str) -> Callable[[], int]:
        lake = ParquetLake(uri=str(Path(cfg["workdir"]) / f"lake-item-json-{path}"))

        def run() -> int:
            with mock.patch.object(staging, "ItemBuilder", ITEM_JSON_PATHS[path]):
                return _stage({**cfg, "data_type": data_type}, lake).extracted
        return run

    def run() -> tuple[int, dict]:
        paths = {}
        stage(ITEM_JSON_TYPES[0], "kernel")()  # warm-up (connector, first connection)
        for data_type, (batches, builders, check) in inputs.items():
            transformed = _rounds({name: transform(b, batches) for name, b in builders.items()},
                                  ITEM_JSON_ROUNDS, {})
            rounds = ITEM_JSON_ROUNDS if cfg["rows"] <= ITEM_JSON_STAGE_ROUND_ROWS else 1
            staged = _rounds({name: stage(data_type, name) for name in ITEM_JSON_PATHS},
                             rounds, pids)
            paths[data_type] = {"transform": transformed, "stage": staged,
                                "ratios": {"transform": _ratios(transformed),
                                           "stage": _ratios(staged)},
                                "stage_rounds": rounds, **check}
        kernel = [p["stage"]["kernel"] for p in paths.values()]
        return sum(k["rows"] for k in kernel), {"seconds": sum(k["seconds"] for k in kernel),
                                                "paths": paths}
    return run


STAGES: dict[str, Callable[[dict], Callable[[], Any]]] = {
    "ceiling": prepare_ceiling, "extract": prepare_extract, "transform": prepare_transform,
    "validate": prepare_validate, "stage": prepare_stage, "upload": prepare_upload,
    "materialize": prepare_materialize, "backfill": prepare_backfill,
    "backfill_small": prepare_backfill_small, "item_json": prepare_item_json,
}


def main() -> None:
    stage, cfg = sys.argv[1], json.loads(sys.argv[2])
    run = STAGES[stage](cfg)
    pids = cfg.get("server_pids", {})
    baseline = _rss_mb()
    servers_before, cpu_before = _server_cpu_s(pids), _cpu_s()
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    extra: dict[str, Any] = {}
    if isinstance(rows, tuple):  # (rows, extra figures: runs launched, days, items)
        rows, extra = rows
    cpu, servers = _cpu_s() - cpu_before, _server_cpu_s(pids)
    out: dict[str, Any] = {"stage": stage, "rows": rows, "seconds": seconds,
                           "peak_rss_mb": round(_rss_mb(), 1),
                           "baseline_rss_mb": round(baseline, 1), "cpu_s": round(cpu, 3),
                           "server_cpu_s": {name: round(servers[name] - servers_before[name], 3)
                                            for name in pids}, **extra}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
