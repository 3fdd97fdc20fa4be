"""Search what fault cases produced for the tokens and passwords they used: the runs' event
logs (log messages, asset metadata, observations, check results), run config and tags,
exception text, and every file of their lakes (local and S3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster._serdes import serialize_value

from blade_pipeline.storage.lake import LakeError, ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, S3_ENV, WAREHOUSE_TOKEN

if TYPE_CHECKING:
    from blade_pipeline_tests.faults.conftest import Recorded

WRONG_WAREHOUSE_TOKEN = "wrong-warehouse-token-9a7c"
WRONG_CATALOG_TOKEN = "wrong-catalog-token-41d2"
SECRETS = (WAREHOUSE_TOKEN, CATALOG_TOKEN, WRONG_WAREHOUSE_TOKEN, WRONG_CATALOG_TOKEN,
           "wrong-warehouse-token-5e1f", S3_ENV["AWS_SECRET_ACCESS_KEY"],
           "hunter2-secret")  # the wrong PostgreSQL password of case 13c

Finding = tuple[str, str, list[str]]


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


def secrets_found(recorded: Recorded, instance: dg.DagsterInstance,
                  s3_endpoint: str) -> tuple[list[Finding], int]:
    """Every place a secret appears in what ``recorded`` holds, and how many lake files were
    read. S3 lakes are read from the S3 API at ``s3_endpoint`` (a case may have used a proxy
    that is gone)."""
    found: list[Finding] = []
    for run_id in recorded.run_ids:
        for event in instance.all_logs(run_id):
            if hit := leaks(serialize_value(event)):
                found.append(("event log", f"{run_id} {event.dagster_event_type}", hit))
        record = instance.get_run_by_id(run_id)
        if hit := leaks(serialize_value(record.run_config) + str(record.tags)):
            found.append(("run config/tags", run_id, hit))
    for text in recorded.texts:
        if hit := leaks(text):
            found.append(("exception text", text[:200], hit))
    files = 0
    for lake in recorded.lakes.values():
        if lake.uri.startswith("s3://"):
            lake = ParquetLake(uri=lake.uri, s3_endpoint=s3_endpoint)
        for path, text in lake_texts(lake):
            files += 1
            if hit := leaks(text):
                found.append(("lake file", path, hit))
    return found, files
