"""The lake cases on a real S3 API (moto's server on loopback; a fault proxy in front of it
where the store must throttle or vanish):

* 0s: every data type staged on S3 reaches the catalog exact; a re-run uploads nothing;
* 1s: SlowDown/5xx bursts from the store during a run are ridden out, the catalog ends exact;
* 3s: a day staged, then re-run with the warehouse killed mid-extract. The run fails clearly;
  the day's object is exactly the one staged before (the issue measured an 842-byte partial
  file in its place), nothing is left under the partition's prefix or the temp prefix; a
  re-execution ends exact;
* 9s: the bucket is gone: the step fails at once (no step retry) naming the bucket and key,
  never the secret, and nothing reaches the catalog.
"""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from blade_pipeline.config.sources import default_sources, source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.storage.lake import TEMP_DIR, ParquetLake
from blade_pipeline_tests.conftest import S3_ENV
from blade_pipeline_tests.faults.conftest import (
    DAY,
    Killer,
    assert_exact,
    catalog_items,
    failure_messages,
    make_resources,
    materialization,
    materialized,
    rerun_exact_after_restart,
    run,
    slow_extract,
)
from blade_pipeline_tests.s3_faults import s3_fault_proxy


def objects(lake: ParquetLake) -> list[str]:
    fs, root = lake._filesystem()
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in found if i.type == pafs.FileType.File)


def s3_resources(fault_warehouse, catalog, s3_lake_uri: str, endpoint: str, **lake):
    res = make_resources(fault_warehouse, catalog, "unused")
    res["lake"] = ParquetLake(uri=s3_lake_uri, s3_endpoint=endpoint, **lake)
    return res


def test_0s_every_data_type_staged_on_s3_reaches_the_catalog_exact(
        fault_warehouse, start_catalog, s3_server, s3_lake_uri, dagster_instance,
        reference_db, recorded):
    res = s3_resources(fault_warehouse, start_catalog(), s3_lake_uri, s3_server.base_url)
    for source in (s for s in default_sources() if s.kind == "databricks"):
        result = run(source, res, dagster_instance, recorded)
        assert result.success, failure_messages(result)
        assert_exact(res, reference_db, source.data_type)
        again = run(source, res, dagster_instance, recorded)  # restaged: nothing to upload
        assert again.success, failure_messages(again)
        uploaded = materialization(again, catalog_key(source))
        assert (uploaded["created"], uploaded["updated"]) == (0, 0)
        assert uploaded["unchanged"] == uploaded["items_total"] > 0
    assert not [o for o in objects(res["lake"]) if o.startswith(TEMP_DIR)]


def test_1s_slowdown_and_5xx_bursts_from_the_store_are_ridden_out(
        fault_warehouse, start_catalog, s3_server, s3_lake_uri, dagster_instance,
        reference_db, recorded):
    with s3_fault_proxy(s3_server.base_url) as (proxy, endpoint):
        res = s3_resources(fault_warehouse, start_catalog(), s3_lake_uri, endpoint)
        rules = [proxy.fail("PUT", 503, "SlowDown", path_part="partNumber=", times=3),
                 proxy.fail("PUT", 503, "SlowDown", path_part="/checkpoints/", times=2),
                 proxy.fail("POST", 500, "InternalError", path_part="uploadId=", times=2),
                 proxy.fail("HEAD", 503, "ServiceUnavailable", times=2)]
        source = source_for("supply")
        result = run(source, res, dagster_instance, recorded)
        assert result.success, failure_messages(result)
        assert [r.hits for r in rules] == [3, 2, 2, 2], "the faults were not all injected"
        assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
        assert_exact(res, reference_db, "supply")


@pytest.mark.slow
@pytest.mark.extended
def test_3s_warehouse_killed_mid_extract_leaves_the_s3_partition_exactly_as_it_was(
        start_warehouse, start_catalog, tmp_path, s3_server, s3_lake_uri, dagster_instance,
        reference_db, recorded):
    server, res = slow_extract(start_warehouse, start_catalog(), tmp_path / "unused")
    lake = res["lake"] = ParquetLake(uri=s3_lake_uri, s3_endpoint=s3_server.base_url)
    source = source_for("sortie")
    first = run(source, res, dagster_instance, recorded, batch_rows=100)
    assert first.success, failure_messages(first)
    fs = lake.filesystem
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


def test_9s_the_bucket_gone_fails_at_once_naming_it_and_uploads_nothing(
        fault_warehouse, start_catalog, s3_server, s3_lake_uri, dagster_instance, recorded):
    catalog = start_catalog()
    source = source_for("readiness")
    bucket = s3_lake_uri[len("s3://"):].split("/", 1)[0]
    with s3_fault_proxy(s3_server.base_url) as (proxy, endpoint):
        # gone while the run writes (after the bucket check of the run's start)
        gone = proxy.fail("POST", 404, "NoSuchBucket", path_part="?uploads")
        res = s3_resources(fault_warehouse, catalog, s3_lake_uri, endpoint)
        message = failed_at_once(run(source, res, dagster_instance, recorded), source)
        assert gone.hits == 1, "a fatal error was retried"
        assert f"s3://{bucket}/lake/readiness/" in message and "NO_SUCH_BUCKET" in message
        assert "fatal" in message and "create it or point BLADE_LAKE_URI" in message
    # gone before the run: the run's first use of the lake says so
    pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{s3_server.port}", scheme="http",
                      allow_bucket_deletion=True).delete_dir(bucket)
    res = s3_resources(fault_warehouse, catalog, s3_lake_uri, s3_server.base_url)
    message = failed_at_once(run(source, res, dagster_instance, recorded), source)
    assert f"the lake bucket s3://{bucket} at {s3_server.base_url} does not exist" in message
    assert catalog_items(res["catalog"], source.catalog_data_source) == []


def failed_at_once(result, source) -> str:
    """The one step failure's message: the staged step, not retried, nothing materialized."""
    assert not result.success
    [message] = [e.event_specific_data.error.message for e in result.all_events
                 if e.event_type_value == "STEP_FAILURE"]
    assert message.startswith("dagster._core.definitions.events.Failure: [readiness] ")
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert not materialized(result, staged_key(source))
    return message
