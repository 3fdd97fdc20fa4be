"""Case 15: a ``kind: csv`` source — files dropped in a landing folder — through the same
factory.

The generator's supply rows (the very rows the mock warehouse of this suite holds, invalid ones
included) are written as CSV files and dropped in a landing folder; the landing sensor, the
landed asset and the source's job take them to the catalog, which must end exact, with the
same items and hashes as from Databricks. Broken lines are quarantined with file, line and
reason while the rest of the file lands.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import CsvDrop, source_for
from blade_pipeline.defs.assets import build_blade_assets, staged_key
from blade_pipeline.defs.jobs import build_partition_job
from blade_pipeline.defs.landing import (
    LandingCursor,
    build_landing_job,
    build_landing_sensor,
    file_partitions,
    landed_key,
)
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.defs.sensors import SensorTickError
from blade_pipeline.sources.csv_drops import CsvDrops
from blade_pipeline.sources.csv_landing import land_file, quarantined_lines
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, S3_ENV, make_bucket
from blade_pipeline_tests.faults.conftest import (
    DAY,
    RANGE,
    assert_exact,
    checks,
    failure_messages,
    make_resources,
    materialization,
    run,
    staged_hashes,
)
from blade_pipeline_tests.s3_faults import s3_fault_proxy

SUPPLY = source_for("supply")
COLUMNS = {"part_number": "string", "nomenclature": "string", "quantity_on_hand": "int",
           "reorder_point": "int", "unit_cost": "decimal(12,2)", "location": "string",
           "condition_code": "string", "classification": "string",
           "last_modified": "timestamp"}
CSV_SUPPLY = SUPPLY.model_copy(update={
    "kind": "csv", "warehouse": None, "csv": CsvDrop(folder="supply", columns=COLUMNS)})
#: broken lines appended to a drop: (text, what the quarantine must say of it)
BROKEN = [
    ("4210-01-999-0001,Widget,lots,5,1.50,A1,A,UNCLASS,{ts}", "quantity_on_hand"),
    ("4210-01-999-0002,Widget,5,5,1.50,A1,A,UNCLASS,{ts},surplus", "TOO MANY COLUMNS"),
    ("4210-01-999-0003,Widget,5,5,1.50,A1,A,UNCLASS,yesterday", "last_modified"),
]


def drop_csv(reference_db, folder: Path, name: str, days: list[str],
             broken: bool = False) -> Path:
    """The reference supply rows of ``days`` as ``folder/name`` (+ the broken lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    reference_db.execute(
        f"COPY (SELECT * FROM blade.blade_supply_data WHERE CAST(last_modified AS DATE) "
        f"BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}') TO '{path}' (HEADER, DELIMITER ',')")
    if broken:
        with path.open("a") as handle:
            for text, _ in BROKEN:
                handle.write(text.format(ts=f"{days[0]} 12:00:00") + "\n")
    return path


def csv_resources(catalog, lake_dir: Path, landing: Path) -> dict[str, Any]:
    lake = ParquetLake(uri=str(lake_dir))
    return {"csv": CsvDrops(landing_uri=str(landing), lake=lake), "lake": lake,
            "catalog": CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN,
                                     backoff_base_s=0.05, backoff_max_s=0.5)}


class Landing:
    """The landing sensor of a CSV source ticking against an instance, and the runs it asks
    for executed in this process (what the daemon would launch)."""

    def __init__(self, source, res: dict[str, Any], instance: dg.DagsterInstance, recorded):
        self.source, self.res, self.instance, self.recorded = source, res, instance, recorded
        landing_job, job = build_landing_job(source), build_partition_job(source)
        self.sensor = build_landing_sensor(source, landing_job, job, daily_partitions(source))
        self.repository = dg.Definitions(
            assets=build_blade_assets(source), jobs=[landing_job, job], sensors=[self.sensor],
            resources=res).get_repository_def()
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                     instance_ref=self.instance.get_ref(),
                                     resources={"csv": self.res["csv"]},
                                     repository_def=self.repository) as context:
            result = self.sensor.evaluate_tick(context)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name,
                                                 list(request.partition_keys))
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        if request.job_name.endswith("_landing_job"):
            return run(self.source, self.res, self.instance, self.recorded,
                       day=request.partition_key, selection=[landed_key(self.source)])
        days = ([request.partition_key] if request.partition_key else
                [request.tags["dagster/asset_partition_range_start"],
                 request.tags["dagster/asset_partition_range_end"]])
        keys = daily_partitions(self.source).get_partition_keys()
        span = keys[keys.index(days[0]):keys.index(days[-1]) + 1]
        selection = [k for k in (staged_key(self.source),
                                 dg.AssetKey(["blade", "supply", "catalog"]))]
        return run(self.source, self.res, self.instance, self.recorded,
                   selection=selection, **({"day": span[0]} if len(span) == 1
                                           else {"days": span}))

    def settle(self) -> list[dg.ExecuteInProcessResult]:
        """Tick and execute until the sensor asks for nothing more."""
        results = []
        for _ in range(6):
            requests = self.tick()
            for request in requests:
                results.append(self.execute(request))
            if not requests and results:
                break
        return results


@pytest.fixture
def landing_dir(tmp_path) -> Path:
    return tmp_path / "landing"


@pytest.mark.slow
def test_15a_a_dropped_file_lands_with_its_broken_lines_quarantined_and_reaches_the_catalog(
        reference_db, fault_warehouse, start_catalog, lake_dir, landing_dir, tmp_path,
        dagster_instance, recorded):
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    drop_csv(reference_db, landing_dir / "supply", "supply-1.csv", RANGE, broken=True)
    landing = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    assert landing.tick() == []  # first sight: not known to be complete yet
    [land] = landing.tick()  # size and mtime held still: complete
    assert land.partition_key == "supply-1.csv"
    landed_run = landing.execute(land)
    assert landed_run.success, failure_messages(landed_run)
    meta = materialization(landed_run, landed_key(CSV_SUPPLY))
    assert meta["lines_quarantined"] == len(BROKEN)
    assert (meta["first_day"], meta["last_day"]) == (RANGE[0], RANGE[-1])
    # the broken lines: file, line number (the header is line 1), the reason naming the column
    lines = quarantined_lines(res["csv"], CSV_SUPPLY.csv, meta["sha256"]).to_pylist()
    moved = Path(res["csv"].landing.path("supply", "_processed",
                                         f"{meta['sha256'][:12]}-supply-1.csv"))
    total = len(moved.read_text().splitlines())
    assert [r["line"] for r in lines] == list(range(total - len(BROKEN) + 1, total + 1))
    for row, (_, why) in zip(lines, BROKEN, strict=True):
        assert row["file"] == "supply-1.csv" and why in row["reason"] and row["raw_line"]
    assert not (landing_dir / "supply" / "supply-1.csv").exists()  # moved, not deleted
    # the sensor's next tick runs the days the file holds: one range run
    [stage] = landing.tick()
    assert stage.tags["dagster/asset_partition_range_start"] == RANGE[0]
    assert stage.tags["blade/landed_files"] == "supply-1.csv"
    staged_run = landing.execute(stage)
    assert staged_run.success, failure_messages(staged_run)
    assert all(c.passed for c in checks(staged_run).values())
    assert_exact(res, reference_db, "supply", days=RANGE)
    assert landing.tick() == []  # nothing more to do
    # the same rows read from the mock Databricks warehouse: the same items, the same hashes
    databricks = make_resources(fault_warehouse, start_catalog(), tmp_path / "databricks")
    assert run(SUPPLY, databricks, dagster_instance, recorded).success
    assert staged_hashes(res["lake"], "supply", DAY) == staged_hashes(databricks["lake"],
                                                                      "supply", DAY)


def test_15b_a_file_seen_before_is_not_landed_twice_and_is_moved_not_deleted(
        reference_db, start_catalog, lake_dir, landing_dir, dagster_instance, recorded):
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    folder = landing_dir / "supply"
    first = drop_csv(reference_db, folder, "monday.csv", [DAY])
    landing = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    results = landing.settle()
    assert results and all(r.success for r in results)
    copy = folder / "monday-again.csv"
    processed = next((folder / "_processed").iterdir())
    copy.write_bytes(processed.read_bytes())
    [land] = [r for r in (landing.tick() or landing.tick())]
    result = landing.execute(land)
    assert result.success
    meta = materialization(result, landed_key(CSV_SUPPLY))
    assert meta["duplicate_of"] == "monday.csv" and meta["rows_landed"] == 0
    assert landing.tick() == []  # no staging run for a duplicate
    assert sorted(p.name.split("-", 1)[1] for p in (folder / "_processed").iterdir()) == [
        "monday-again.csv", "monday.csv"]
    landed_files = [p for p in (lake_dir / "landed" / "supply").iterdir() if p.is_file()]
    assert len(landed_files) == 1  # one copy of the rows
    assert not first.exists()


def test_15c_marker_rule_and_growing_files(reference_db, start_catalog, lake_dir, landing_dir,
                                           dagster_instance, recorded):
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    folder = landing_dir / "supply"
    marked = CSV_SUPPLY.model_copy(update={"csv": CSV_SUPPLY.csv.model_copy(
        update={"complete_when": "marker"})})
    path = drop_csv(reference_db, folder, "tuesday.csv", [DAY])
    landing = Landing(marked, res, dagster_instance, recorded)
    assert landing.tick() == [] and landing.tick() == []  # still, but no marker
    (folder / "tuesday.csv.done").write_text("")
    [land] = landing.tick()
    assert landing.execute(land).success
    assert not path.exists() and not (folder / "tuesday.csv.done").exists()
    moved = sorted(p.name.split("-", 1)[1] for p in (folder / "_processed").iterdir())
    assert moved == ["tuesday.csv", "tuesday.csv.done"]  # the marker went with its file
    # stable rule: a file that grows between ticks is not picked up until it holds still
    stable = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    growing = folder / "growing.csv"
    growing.write_text(",".join(COLUMNS) + "\n")
    assert stable.tick() == []
    with growing.open("a") as handle:
        handle.write(f"4210-01-999-0004,Widget,5,5,1.50,A1,A,UNCLASS,{DAY} 12:00:00\n")
    assert stable.tick() == []  # grew since the last tick
    [land] = stable.tick()
    assert land.partition_key == "growing.csv"


def test_15d_a_file_without_a_header_is_rejected_by_name(start_catalog, lake_dir, landing_dir,
                                                         dagster_instance, recorded):
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    folder = landing_dir / "supply"
    folder.mkdir(parents=True)
    (folder / "empty.csv").write_text("")
    landing = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    landing.tick()
    [land] = landing.tick()
    result = landing.execute(land)
    assert not result.success
    [message] = [m for m in failure_messages(result) if "empty.csv" in m][:1]
    assert "no header line" in message and "_rejected" in message
    assert [p.name.split("-", 1)[1] for p in (folder / "_rejected").iterdir()] == ["empty.csv"]


def test_15e_a_file_with_a_new_column_evolves_the_schema(reference_db, start_catalog, lake_dir,
                                                         landing_dir, dagster_instance,
                                                         recorded):
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    folder = landing_dir / "supply"
    landing = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    drop_csv(reference_db, folder, "v1.csv", [RANGE[0]])
    assert all(r.success for r in landing.settle())
    path = drop_csv(reference_db, folder, "v2.csv", [DAY])
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0] + ",bin"] + [line + ",B-7" for line in text[1:]]) + "\n")
    results = landing.settle()
    assert results and all(r.success for r in results), [failure_messages(r) for r in results]
    landed_meta = materialization(results[0], landed_key(CSV_SUPPLY))
    assert landed_meta["undeclared_columns"] == "bin"
    staged = checks(results[-1])["schema_changed"]
    assert staged.passed is False and staged.severity == dg.AssetCheckSeverity.WARN
    table = pq.read_table(res["lake"].partition_dir("supply", DAY) + "/part-0.parquet")
    assert '"bin":"B-7"' in table.column("data")[0].as_py()


def test_15f_file_partitions_are_dynamic(dagster_instance):
    assert file_partitions(CSV_SUPPLY).name == "blade_supply_files"
    assert LandingCursor.parse(LandingCursor(seen={"a": [1, 2]}, after=3).dump()).after == 3


def test_15g_drops_in_an_object_store_land_and_an_unreachable_one_fails_the_tick(
        reference_db, s3_server, start_catalog, dagster_instance, recorded, tmp_path):
    """Landing root and lake in buckets of the loopback S3 API (moto's server): the file is
    listed, downloaded, landed, moved server-side and its day staged exact. With the store
    unreachable, the sensor's tick fails naming the landing root and the variable."""
    bucket = make_bucket(s3_server, "blade-drops")
    lake = ParquetLake(uri=f"{bucket}/lake", s3_endpoint=s3_server.base_url)
    drops = CsvDrops(landing_uri=f"{bucket}/landing", s3_endpoint=s3_server.base_url, lake=lake)
    res = {"csv": drops, "lake": lake,
           "catalog": CatalogClient(base_url=start_catalog().base_url, token=CATALOG_TOKEN,
                                    backoff_base_s=0.05, backoff_max_s=0.5)}
    local = drop_csv(reference_db, tmp_path, "remote.csv", [DAY], broken=True)
    fs = drops.landing.filesystem
    with fs.open_output_stream(drops.landing.path("supply", "remote.csv")) as out:
        out.write(local.read_bytes())
    landing = Landing(CSV_SUPPLY, res, dagster_instance, recorded)
    results = landing.settle()
    assert len(results) == 2 and all(r.success for r in results), [
        failure_messages(r) for r in results]
    assert materialization(results[0], landed_key(CSV_SUPPLY))["lines_quarantined"] == 3
    assert_exact(res, reference_db, "supply")
    [moved] = [e.name for e in drops.landing.file_entries(drops.landing.path("supply",
                                                                             "_processed"))]
    assert moved.endswith("-remote.csv")
    assert drops.landing.file_entries(drops.landing.path("supply")) == []
    down = CsvDrops(landing_uri=f"{bucket}/landing", s3_endpoint="http://127.0.0.1:9",
                    s3_max_attempts=2, lake=lake)  # not the ~20 s of the default 6 attempts
    cut = Landing(CSV_SUPPLY, {**res, "csv": down}, dagster_instance, recorded)
    with pytest.raises(SensorTickError, match=re.escape(
            f"[supply] landing sensor: cannot list {bucket}/landing/supply (the next tick "
            f"retries): cannot reach the landing bucket {bucket} at http://127.0.0.1:9")):
        cut.tick()


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId"])
def test_15j_refused_credentials_of_the_landing_store_fail_the_tick_at_once(
        s3_server, start_catalog, dagster_instance, recorded, code):
    """The landing bucket refuses the AWS credentials (403): the landing sensor's tick fails
    at once (not retried) naming the landing root and the credentials, never the secret."""
    bucket = make_bucket(s3_server, "blade-refused")
    lake = ParquetLake(uri=f"{bucket}/lake", s3_endpoint=s3_server.base_url)
    with s3_fault_proxy(s3_server.base_url) as (proxy, url):
        drops = CsvDrops(landing_uri=f"{bucket}/landing", s3_endpoint=url, lake=lake)
        rule = proxy.fail("GET", 403, code)
        catalog = CatalogClient(base_url=start_catalog().base_url, token=CATALOG_TOKEN)
        landing = Landing(CSV_SUPPLY, {"csv": drops, "lake": lake, "catalog": catalog},
                          dagster_instance, recorded)
        with pytest.raises(SensorTickError) as caught:
            landing.tick()
    message = str(caught.value)
    assert rule.hits == 1, "a refusal was retried"
    assert f"[supply] landing sensor: cannot list {bucket}/landing/supply (every tick fails " \
           "until it is fixed)" in message
    assert "fatal" in message and "credentials" in message
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message, message


def test_15h_a_landing_that_died_before_moving_its_file_is_finished_by_the_next_run(
        reference_db, start_catalog, lake_dir, landing_dir, dagster_instance, recorded):
    """Rows and record written, the file not moved yet (the run was killed): the next landing
    run of the file does not call it a duplicate of itself; it moves it and hands its days on
    to staging."""
    res = csv_resources(start_catalog(), lake_dir, landing_dir)
    path = drop_csv(reference_db, landing_dir / "supply", "killed.csv", [DAY])
    drops: CsvDrops = res["csv"]
    first = land_file(drops, CSV_SUPPLY, str(path), "run-1")
    moved = Path(first.moved_to)
    moved.rename(path)  # as if the run had died after the record, before the move
    again = land_file(drops, CSV_SUPPLY, str(path), "run-2")
    assert again.duplicate_of is None and (again.first_day, again.rows) == (DAY, first.rows)
    assert again.run_id == "run-1" and moved.exists() and not path.exists()
    landed = [p for p in (lake_dir / "landed" / "supply").iterdir() if p.is_file()]
    assert len(landed) == 1


def test_15i_the_cli_lists_the_landing_folders(landing_dir, monkeypatch, capsys):
    from blade_pipeline.cli import main

    (landing_dir / "supply").mkdir(parents=True)
    monkeypatch.setenv("BLADE_LANDING_URI", str(landing_dir))
    assert main(["test-connection", "--kind", "csv"]) == 0
    assert f"OK: {landing_dir} answered" in capsys.readouterr().out
    monkeypatch.setenv("BLADE_LANDING_URI", "s3://no-such-bucket/landing")
    monkeypatch.setenv("BLADE_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("BLADE_S3_MAX_ATTEMPTS", "2")  # not the ~20 s of the default 6
    assert main(["test-connection", "--kind", "csv"]) == 1
    assert "cannot reach the landing bucket" in capsys.readouterr().err
