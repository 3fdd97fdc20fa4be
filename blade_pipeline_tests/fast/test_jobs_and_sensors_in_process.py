"""The query job, the item job and the change sensor, in-process."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import dagster as dg
import pyarrow.parquet as pq
import yaml

from blade_pipeline.config.sources import source_for
from blade_pipeline.definitions import defs
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.defs.jobs import blade_item_job, blade_query_job
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.server import MAIN_DATABASE
from blade_pipeline.storage.lake import ParquetLake
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
            return sensor.evaluate_tick(context)  # as the daemon evaluates it

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
    assert "no rows changed" in tick(second.cursor).skip_message
    own.close()


def json_logging(tmp_path):
    """An instance with dagster.yaml's python_logs handler, writing to a file of tmp_path."""
    python_logs = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["python_logs"]
    path = tmp_path / "blade.jsonl"
    python_logs["dagster_handler_config"]["handlers"]["blade_json"]["path"] = str(path)
    return dg.instance_for_test(overrides={"python_logs": python_logs}), path


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_json_logs_carry_run_id_data_type_day_and_step(resources, monkeypatch, tmp_path):
    monkeypatch.setenv("BLADE_LOG_FORMAT", "json")
    source = source_for("readiness")
    instance_context, path = json_logging(tmp_path)
    with instance_context as instance:
        result = dg.materialize(build_blade_assets(source), resources=resources,
                                partition_key=DAY, instance=instance)
    assert result.success
    lines = read_lines(path)
    ours = [doc for doc in lines if doc["message"].startswith("[readiness")]
    assert ours, "no pipeline log line came out as JSON"
    for doc in ours:
        assert doc["run_id"] == result.run_id and doc["data_type"] == "readiness"
        assert doc["partition"] == DAY and doc["step"].startswith("blade__readiness__")
        assert doc["level"] in {"INFO", "WARNING"} and doc["ts"].endswith("+00:00")
    assert all(doc["run_id"] == result.run_id for doc in lines)  # INFO up: no DEBUG events


def test_a_json_step_failure_line_carries_its_cause(monkeypatch, tmp_path):
    monkeypatch.setenv("BLADE_LOG_FORMAT", "json")

    @dg.asset(name="blade__supply__staged")
    def failing() -> None:
        raise dg.Failure(description="[supply] catalog http://catalog refused the token")

    instance_context, path = json_logging(tmp_path)
    with instance_context as instance:
        assert not dg.materialize([failing], instance=instance, raise_on_error=False).success
    [line] = [doc for doc in read_lines(path) if doc.get("event") == "STEP_FAILURE"]
    assert line["data_type"] == "supply" and line["level"] == "ERROR"
    assert line["error"].endswith("[supply] catalog http://catalog refused the token")


def test_json_logs_are_off_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("BLADE_LOG_FORMAT", raising=False)
    instance_context, path = json_logging(tmp_path)
    with instance_context as instance:
        assert dg.materialize([_ok], instance=instance).success
    assert read_lines(path) == []


@dg.asset
def _ok() -> None:
    return None
