"""Bench stages of the other source kinds (`blade bench --source postgres | csv`).

    stage_postgres  our staging path reading the bench's rows from PostgreSQL (ADBC):
                    extract -> validate -> items -> Parquet, as ``stage`` does from Databricks
    dlt_pyarrow     dlt's ``sql_table`` (backend pyarrow) of the same table -> Parquet files,
    dlt_connectorx  and with backend connectorx: the peer, in its own venv (``dlt_peer.py``)
    ceiling_csv     pyarrow.csv (streaming, the declared types) -> Parquet: the plain copy
    land_csv        our landing of the same file (DuckDB's reader, quarantine, lake write)
    stage_csv       landing + staging of its day from the landed rows
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from blade_pipeline.config.sources import BladeSource, CsvDrop, DatabaseTable, source_for
from blade_pipeline.devservices.warehouse.tables import COLUMNS, TABLES
from blade_pipeline.sources.csv_drops import CsvDrops
from blade_pipeline.sources.csv_landing import land_file
from blade_pipeline.sources.postgres import PostgresDatabase
from blade_pipeline.sources.reader import SourceReader
from blade_pipeline.steps import staging
from blade_pipeline.steps.items import IngestRun
from blade_pipeline.steps.stage_partition import stage_partition
from blade_pipeline.storage.lake import ParquetLake

#: what a generated table's column is declared as in a CSV source
_CSV_TYPES = {"VARCHAR": "string", "INTEGER": "int", "BIGINT": "int", "SMALLINT": "int",
              "DOUBLE": "double", "FLOAT": "float", "TIMESTAMP": "timestamp", "DATE": "date",
              "BOOLEAN": "boolean"}
_ARROW = {"string": pa.string(), "int": pa.int64(), "double": pa.float64(),
          "float": pa.float64(), "timestamp": pa.timestamp("us"), "date": pa.date32(),
          "boolean": pa.bool_()}
DLT_PEER = Path(__file__).with_name("dlt_peer.py")
#: dlt and its drivers, installed in their own venv (a peer measured, not a dependency)
DLT_REQUIREMENTS = ["dlt[parquet,sql_database]>=1.5", "sqlalchemy>=2", "psycopg2-binary>=2.9",
                    "connectorx>=0.4", "pyarrow>=18"]


def csv_columns(data_type: str) -> dict[str, str]:
    """The generated table's columns, as a CSV source declares them."""
    return {name: (kind.lower() if kind.startswith("DECIMAL") else _CSV_TYPES[kind])
            for name, kind in COLUMNS[data_type]}


def kind_source(data_type: str, kind: str) -> BladeSource:
    """The bench's data type read from PostgreSQL (the generator's table) or CSV drops."""
    base = source_for(data_type)
    if kind == "postgres":
        return base.model_copy(update={"kind": "postgres", "warehouse": None, "database":
                                       DatabaseTable(schema="blade", table=TABLES[data_type])})
    return base.model_copy(update={"kind": "csv", "warehouse": None, "csv": CsvDrop(
        folder="bench", columns=csv_columns(data_type))})


def stage_day(cfg: dict, source: BladeSource, reader: SourceReader,
              lake: ParquetLake) -> staging.StageResult:
    """The bench day of ``source`` staged from ``reader`` (the Databricks warehouse, the
    PostgreSQL database, the landed CSV rows) by the staged asset's own step."""
    day = (dt.date.fromisoformat(cfg["end"]) - dt.timedelta(days=1)).isoformat()
    return stage_partition(source, reader, lake, [day], IngestRun.now("bench"),
                           cfg["batch_rows"]).days[day]


def prepare_stage_postgres(cfg: dict) -> Callable[[], int]:
    source = kind_source(cfg["data_type"], "postgres")
    database = PostgresDatabase(url=cfg["postgres_url"])
    lake = ParquetLake(uri=str(Path(cfg["workdir"]) / "lake_postgres"))
    return lambda: stage_day(cfg, source, database, lake).extracted


def local_server_pid(url: str) -> int | None:
    """The pid of the server listening on ``url``'s loopback port (None: not on this machine,
    or not visible): its CPU counts as the stage's server CPU, as the mock warehouse's does."""
    import psutil

    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        return None
    try:
        listening = [c.pid for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == parts.port]
    except psutil.AccessDenied:
        return None
    return next((pid for pid in listening if pid), None)


def dlt_python(home: Path) -> str:
    """The python of the dlt venv: ``BLADE_BENCH_DLT_PYTHON``, or ``<home>/dlt-venv`` created
    (and dlt installed) on first use."""
    if os.environ.get("BLADE_BENCH_DLT_PYTHON"):
        return os.environ["BLADE_BENCH_DLT_PYTHON"]
    venv = home / "dlt-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"blade bench: installing dlt in {venv} (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DLT_REQUIREMENTS],
                       check=True)
        (venv / ".installed").write_text("")
    return str(python)


def run_dlt(cfg: dict, backend: str) -> dict[str, Any]:
    """dlt's sql_table of the bench's PostgreSQL table to Parquet, in the dlt venv."""
    out = Path(cfg["workdir"]) / f"dlt_{backend}"
    shutil.rmtree(out, ignore_errors=True)
    settings = {"url": cfg["postgres_url"].replace("postgresql://", "postgresql+psycopg2://", 1),
                "schema": "blade",
                "table": TABLES[cfg["data_type"]], "backend": backend,
                "chunk_size": cfg["batch_rows"], "out": str(out)}
    from blade_pipeline.bench.stages import server_cpu_s

    pids = cfg.get("server_pids", {})
    before = server_cpu_s(pids)
    proc = subprocess.run([cfg["dlt_python"], str(DLT_PEER), json.dumps(settings)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dlt ({backend}) failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    after = server_cpu_s(pids)  # the server's CPU for dlt's queries (its imports cost none)
    return {"stage": f"dlt_{backend}", **result,
            "server_cpu_s": {name: round(after[name] - before[name], 3) for name in pids}}


def write_bench_csv(cfg: dict, path: Path) -> None:
    """The bench's rows as one CSV file (``python -m blade_pipeline.bench.kinds``: run.py
    writes it in a child process once, so no stage's peak RSS holds the generator's)."""
    from blade_pipeline.bench.stages import _local_rows

    con, sql = _local_rows(cfg)
    con.execute(f"COPY ({sql}) TO '{path}' (HEADER, DELIMITER ',')")


def bench_csv(cfg: dict) -> Path:
    return Path(cfg["csv_path"])


def prepare_ceiling_csv(cfg: dict) -> Callable[[], int]:
    path = bench_csv(cfg)
    types = {name: (pa.decimal128(*map(int, t[8:-1].split(","))) if t.startswith("decimal")
                    else _ARROW[t]) for name, t in csv_columns(cfg["data_type"]).items()}
    out = Path(cfg["workdir"]) / "ceiling_csv.parquet"

    def run() -> int:
        reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=False),
            read_options=pacsv.ReadOptions(block_size=16 << 20))
        rows = 0
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    return run


def _drops(cfg: dict, name: str) -> tuple[CsvDrops, BladeSource, str]:
    """A landing folder holding the bench file, and the lake beside it."""
    source = kind_source(cfg["data_type"], "csv")
    root = Path(cfg["workdir"]) / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "landing" / "bench").mkdir(parents=True)
    dropped = root / "landing" / "bench" / "bench.csv"
    shutil.copy(bench_csv(cfg), dropped)
    drops = CsvDrops(landing_uri=str(root / "landing"),
                     lake=ParquetLake(uri=str(root / "lake")))
    return drops, source, str(dropped)


def prepare_land_csv(cfg: dict) -> Callable[[], int]:
    drops, source, path = _drops(cfg, "land_csv")
    return lambda: land_file(drops, source, path, "bench").rows


def prepare_stage_csv(cfg: dict) -> Callable[[], int]:
    drops, source, path = _drops(cfg, "stage_csv")

    def run() -> int:
        land_file(drops, source, path, "bench")
        return stage_day(cfg, source, drops, drops.lake).extracted
    return run


STAGES: dict[str, Callable[[dict], Callable[[], Any]]] = {
    "stage_postgres": prepare_stage_postgres, "ceiling_csv": prepare_ceiling_csv,
    "land_csv": prepare_land_csv, "stage_csv": prepare_stage_csv,
}
PEER_STAGES = ("dlt_pyarrow", "dlt_connectorx")  # run by run.py in the dlt venv


if __name__ == "__main__":
    write_bench_csv(json.loads(sys.argv[1]), Path(sys.argv[2]))
