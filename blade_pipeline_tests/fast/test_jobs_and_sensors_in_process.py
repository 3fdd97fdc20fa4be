"""The query job, the item job and the change sensor, in-process."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time

import dagster as dg
import pyarrow.parquet as pq
import yaml

from blade_pipeline.assets import build_blade_assets
from blade_pipeline.definitions import defs
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.server import MAIN_DATABASE
from blade_pipeline.jobs import blade_item_job, blade_query_job
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.sources import source_for
from blade_pipeline_tests.conftest import REPO_ROOT
from blade_pipeline_tests.expectations import readiness_ids_to_ask
from blade_pipeline_tests.fast.conftest import DAY, SEED, warehouse_at


def test_the_query_job_stages_and_uploads_the_filtered_rows(resources):
    config = {"ops": {"run_query": {"config": {"data_type": "maintenance",
                                               "where": "priority = 'HIGH'", "limit": 100}}}}
    result = blade_query_job.execute_in_process(run_config=config, resources=resources)
    lake: ParquetLake = resources["lake"]
    staged = pq.read_table(lake.path("queries", result.run_id, "items", "part-0.parquet"))
    assert 0 < staged.num_rows <= 100
    assert all('"priority":"HIGH"' in d for d in staged.column("data").to_pylist())
    assert result.output_for_node("run_query") == {"staged": staged.num_rows,
                                                   "uploaded": staged.num_rows}
    assert resources["catalog"].lookup(staged.column("item_id")) == dict(zip(
        staged.column("item_id").to_pylist(), staged.column("content_hash").to_pylist(),
        strict=True))


def test_the_item_job_reports_per_item_and_skips_unchanged(resources, reference):
    ids, bad_key = readiness_ids_to_ask(reference)
    config = {"ops": {"ingest_item_ids": {"config": {"data_type": "readiness", "item_ids": ids}}}}
    report = blade_item_job.execute_in_process(run_config=config, resources=resources
                                               ).output_for_node("ingest_item_ids")
    assert [report[i]["status"] for i in ids[:3]] == ["created"] * 3
    assert report["READY-999999999"]["status"] == "not found in warehouse"
    assert report[f"READY-{bad_key}"]["status"] == "invalid"
    again = blade_item_job.execute_in_process(run_config=config, resources=resources
                                              ).output_for_node("ingest_item_ids")
    assert [again[i]["status"] for i in ids[:3]] == ["unchanged"] * 3


def test_the_change_sensor_requests_the_changed_days_as_one_range(warehouse, tmp_path):
    own = warehouse_at(tmp_path / "changing.duckdb")  # a copy: this test changes rows
    warehouse.close()
    shutil.copy(warehouse.db_path, own.db_path)
    sensor = defs.get_sensor_def("blade_sortie_changes")

    def tick(cursor: str | None):
        with dg.build_sensor_context(cursor=cursor, resources={"warehouse": own},
                                     definitions=defs) as context:
            return sensor(context)

    first = tick(None)
    assert not first.run_requests and first.cursor
    con = own._connection().cursor()
    con.execute(f"USE {MAIN_DATABASE}")
    # rows changed on the two days after the seeded history (it ends 2026-06-29)
    for n, stamp in enumerate(("2026-06-30 10:00:00", "2026-07-01 10:00:00")):
        generator.apply_changes(con, inserts=3, updates=3, now=dt.datetime.fromisoformat(stamp),
                                seed=SEED + n, schema="blade")
    second = tick(first.cursor)
    [request] = second.run_requests
    assert request.partition_key_range == dg.PartitionKeyRange("2026-06-30", "2026-07-01")
    assert request.tags["blade/changed_rows"] == "12"
    assert isinstance(tick(second.cursor), dg.SkipReason)
    own.close()


def test_json_logs_carry_run_id_data_type_day_and_step(resources, monkeypatch, capfd):
    monkeypatch.setenv("BLADE_LOG_FORMAT", "json")
    source = source_for("readiness")
    python_logs = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["python_logs"]
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = dg.materialize(build_blade_assets(source), resources=resources,
                                partition_key=DAY, instance=instance)
    assert result.success
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{")]
    ours = [doc for doc in lines if doc["message"].startswith("[readiness")]
    assert ours, "no pipeline log line came out as JSON"
    for doc in ours:
        assert doc["run_id"] == result.run_id and doc["data_type"] == "readiness"
        assert doc["partition"] == DAY and doc["step"].startswith("blade__readiness__")
        assert doc["level"] in {"INFO", "WARNING"} and doc["ts"].endswith("+00:00")
    assert all(doc["run_id"] == result.run_id for doc in lines)  # INFO up: no DEBUG events


def json_lines(capfd, wanted, timeout: float = 5.0) -> list[dict]:
    """The JSON lines written to stderr that ``wanted`` accepts, waiting up to ``timeout`` for
    the first (a handler may write after the run returns)."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        found += [json.loads(line) for line in capfd.readouterr().err.splitlines()
                  if line.startswith("{") and wanted(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_json_step_failure_line_carries_its_cause(monkeypatch, capfd):
    monkeypatch.setenv("BLADE_LOG_FORMAT", "json")

    @dg.asset(name="blade__supply__staged")
    def failing() -> None:
        raise dg.Failure(description="[supply] catalog http://catalog refused the token")

    python_logs = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["python_logs"]
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        assert not dg.materialize([failing], instance=instance, raise_on_error=False).success
    [line] = json_lines(capfd, lambda text: '"STEP_FAILURE"' in text)
    assert line["data_type"] == "supply" and line["level"] == "ERROR"
    assert line["error"].endswith("[supply] catalog http://catalog refused the token")
