"""Case 11: after the other cases (this module runs last), no token appears in the runs'
event logs (log messages, asset metadata, observations, check results), in exception text or
anywhere in the lakes (local and S3: the S3 secret key is one of the secrets). Runs its own
faulty runs (and one on S3) too, so it proves something when run alone."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster._serdes import serialize_value

from blade_pipeline.resources.lake import LakeError, ParquetLake
from blade_pipeline.sources import source_for
from blade_pipeline_tests.conftest import CATALOG_TOKEN, S3_ENV, WAREHOUSE_TOKEN
from blade_pipeline_tests.faults.conftest import failure_messages, make_resources, run

WRONG_WAREHOUSE_TOKEN = "wrong-warehouse-token-9a7c"
WRONG_CATALOG_TOKEN = "wrong-catalog-token-41d2"
SECRETS = (WAREHOUSE_TOKEN, CATALOG_TOKEN, WRONG_WAREHOUSE_TOKEN, WRONG_CATALOG_TOKEN,
           "wrong-warehouse-token-5e1f", S3_ENV["AWS_SECRET_ACCESS_KEY"],
           "hunter2-secret")  # the wrong PostgreSQL password of case 13c


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def lake_texts(lake: ParquetLake) -> Iterator[tuple[str, str]]:
    """Every file of a lake, local or on S3, as searchable text: Parquet pages are compressed,
    so its decoded rows and footer; other files as bytes."""
    try:
        fs, root = lake._filesystem()
    except LakeError:  # a case deleted its bucket
        return
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        if info.path.endswith(".parquet"):
            parquet = pq.ParquetFile(fs.open_input_file(info.path))
            yield info.path, str(parquet.read().to_pylist()) + str(parquet.metadata.metadata)
        else:
            with fs.open_input_stream(info.path) as handle:
                yield info.path, handle.read().decode("latin-1")


def test_11_no_token_in_logs_metadata_errors_or_lake(
        fault_warehouse, start_catalog, tmp_path, dagster_instance, recorded, s3_server,
        s3_lake_uri):
    catalog = start_catalog()
    for number, overrides in enumerate([{"warehouse_token": WRONG_WAREHOUSE_TOKEN},
                                        {"catalog_token": WRONG_CATALOG_TOKEN}, {}, {}]):
        res = make_resources(fault_warehouse, catalog, tmp_path / f"lake{number}", **overrides)
        if number == 3:
            res["lake"] = ParquetLake(uri=s3_lake_uri, s3_endpoint=s3_server.base_url)
        result = run(source_for("readiness"), res, dagster_instance, recorded)
        assert result.success == (not overrides), failure_messages(result)

    assert len(recorded.run_ids) >= 4 and recorded.texts
    assert any(uri.startswith("s3://") for uri in recorded.lakes)
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
    for lake in recorded.lakes.values():
        if lake.uri.startswith("s3://"):  # read from the S3 API itself (a case used a proxy)
            lake = ParquetLake(uri=lake.uri, s3_endpoint=s3_server.base_url)
        for path, text in lake_texts(lake):
            files += 1
            if hit := leaks(text):
                found.append(("lake file", path, hit))
    assert files > 0
    assert not found, found
