"""Case 11: after the other cases (this module runs last), no token appears in the runs'
event logs (log messages, asset metadata, observations, check results), in exception text or
anywhere in the lake. Runs its own faulty runs too, so it proves something when run alone."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from dagster._serdes import serialize_value

from blade_pipeline.sources import source_for
from blade_pipeline_tests.conftest import CATALOG_TOKEN, WAREHOUSE_TOKEN
from blade_pipeline_tests.faults.conftest import failure_messages, make_resources, run

WRONG_WAREHOUSE_TOKEN = "wrong-warehouse-token-9a7c"
WRONG_CATALOG_TOKEN = "wrong-catalog-token-41d2"
SECRETS = (WAREHOUSE_TOKEN, CATALOG_TOKEN, WRONG_WAREHOUSE_TOKEN, WRONG_CATALOG_TOKEN,
           "wrong-warehouse-token-5e1f")


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_11_no_token_in_logs_metadata_errors_or_lake(
        fault_warehouse, start_catalog, tmp_path, dagster_instance, recorded):
    catalog = start_catalog()
    for number, overrides in enumerate([{"warehouse_token": WRONG_WAREHOUSE_TOKEN},
                                        {"catalog_token": WRONG_CATALOG_TOKEN}, {}]):
        res = make_resources(fault_warehouse, catalog, tmp_path / f"lake{number}", **overrides)
        result = run(source_for("readiness"), res, dagster_instance, recorded)
        assert result.success == (not overrides), failure_messages(result)

    assert len(recorded.run_ids) >= 3 and recorded.texts
    found: list[tuple[str, str, list[str]]] = []
    for run_id in recorded.run_ids:
        for event in dagster_instance.all_logs(run_id):
            if hit := leaks(serialize_value(event)):
                found.append(("event log", f"{run_id} {event.dagster_event_type}", hit))
        record = dagster_instance.get_run_by_id(run_id)
        if hit := leaks(serialize_value(record.run_config) + str(record.tags)):
            found.append(("run config/tags", run_id, hit))
    for text in recorded.texts:
        if hit := leaks(text):
            found.append(("exception text", text[:200], hit))
    files = 0
    for lake in {Path(p) for p in recorded.lakes}:
        if not lake.is_dir():
            continue
        for path in lake.rglob("*"):
            if path.is_file():
                files += 1
                # Parquet pages are compressed: search the decoded rows, footer included.
                text = (str(pq.read_table(path).to_pylist()) + str(pq.read_metadata(path).metadata)
                        if path.suffix == ".parquet" else path.read_bytes().decode("latin-1"))
                if hit := leaks(text):
                    found.append(("lake file", str(path), hit))
    assert files > 0
    assert not found, found
