"""Case 3s: the lake on a real S3 API (moto's server): a day staged, then re-run with the
warehouse killed mid-extract. The run fails clearly; the day's object is exactly the one
staged before (the issue measured an 842-byte partial file in its place), nothing is left
under the partition's prefix or the temp prefix; a re-execution ends exact."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from blade_pipeline.assets import staged_key
from blade_pipeline.resources.lake import TEMP_DIR, ParquetLake
from blade_pipeline.sources import source_for
from blade_pipeline_tests.faults.conftest import (
    DAY,
    Killer,
    failure_messages,
    materialized,
    rerun_exact_after_restart,
    run,
    slow_extract,
)


def objects(lake: ParquetLake) -> list[str]:
    fs, root = lake._filesystem()
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in found if i.type == pafs.FileType.File)


@pytest.mark.slow
def test_3s_warehouse_killed_mid_extract_leaves_the_s3_partition_exactly_as_it_was(
        start_warehouse, start_catalog, tmp_path, s3_server, s3_lake_uri, dagster_instance,
        reference_db, recorded):
    server, res = slow_extract(start_warehouse, start_catalog(), tmp_path / "unused")
    lake = res["lake"] = ParquetLake(uri=s3_lake_uri, s3_endpoint=s3_server.base_url)
    source = source_for("sortie")
    first = run(source, res, dagster_instance, recorded, batch_rows=100)
    assert first.success, failure_messages(first)
    fs, _ = lake._filesystem()
    staged = f"{lake.partition_dir('sortie', DAY)}/part-0.parquet"
    before = fs.open_input_file(staged).read()
    listed = objects(lake)

    seen = len(s3_server.log_text())  # moto logs each request: the re-run's temp upload starts
    killer = Killer(server, lambda: f"/{TEMP_DIR}/" in s3_server.log_text()[seen:])
    again = run(source, res, dagster_instance, recorded, batch_rows=100,
                selection=[staged_key(source)])
    killer.join()
    assert killer.at, "the warehouse was never killed mid-extract"
    assert not again.success
    message = " ".join(failure_messages(again))
    assert "[sortie] Databricks SQL warehouse" in message and server.base_url in message
    assert not materialized(again, staged_key(source))
    assert fs.open_input_file(staged).read() == before, "the staged object was replaced"
    assert objects(lake) == listed, "objects were left behind"
    assert not [o for o in objects(lake) if o.startswith(TEMP_DIR)]

    rerun_exact_after_restart(server, source, res, dagster_instance, recorded, reference_db,
                              batch_rows=100)
