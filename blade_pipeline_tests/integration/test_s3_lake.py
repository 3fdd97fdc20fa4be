"""The lake on a real S3 API (moto's server on loopback): writes are atomic, failures leave
the previous object exactly as it was and nothing under the partition's prefix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from blade_pipeline.storage.lake import TEMP_DIR, LakeError, ParquetLake
from blade_pipeline_tests.conftest import S3_ENV
from blade_pipeline_tests.s3_faults import s3_fault_proxy

SCHEMA = pa.schema([("item_id", pa.string()), ("n", pa.int64())])


def table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"item_id": [f"I-{i}" for i in range(start, start + n)],
                     "n": list(range(start, start + n))}, schema=SCHEMA)


@pytest.fixture
def lake(s3_server, s3_lake_uri) -> ParquetLake:
    return ParquetLake(uri=s3_lake_uri, s3_endpoint=s3_server.base_url, row_group_rows=1_000)


def keys(lake: ParquetLake, prefix: str = "") -> list[str]:
    fs, root = lake._filesystem()
    selector = pafs.FileSelector(f"{root}/{prefix}".rstrip("/"), recursive=True,
                                 allow_not_found=True)
    return sorted(i.path[len(root) + 1:] for i in fs.get_file_info(selector)
                  if i.type == pafs.FileType.File)


def test_a_partition_is_written_read_and_replaced_whole(lake):
    directory = lake.partition_dir("maintenance", "2026-06-29")
    written = lake.write_parquet(directory, SCHEMA, [table(1500)], metadata={"valid": 1500})
    assert written.rows == 1500 and written.bytes > 0
    assert lake.footer_metadata(directory) == {"valid": 1500}
    lake.write_parquet(directory, SCHEMA, [table(700, 5000)], metadata={"valid": 700})
    assert sum(b.num_rows for b in lake.iter_batches(directory, 500)) == 700
    assert keys(lake) == ["maintenance/date=2026-06-29/part-0.parquet"]  # no temp left


def test_a_write_that_fails_half_way_leaves_the_previous_partition_exactly(lake):
    directory = lake.partition_dir("sortie", "2026-06-29")
    lake.write_parquet(directory, SCHEMA, [table(3000)], metadata={"valid": 3000})
    fs = lake.filesystem
    before = fs.open_input_file(f"{directory}/part-0.parquet").read()

    def failing():
        yield table(2000, 10_000)  # a row group reaches the store, then the extract dies
        raise ConnectionError("warehouse gone mid-extract")

    with pytest.raises(ConnectionError):
        lake.write_parquet(directory, SCHEMA, failing(), metadata={"valid": 9})
    assert fs.open_input_file(f"{directory}/part-0.parquet").read() == before
    assert pq.read_table(fs.open_input_file(f"{directory}/part-0.parquet")).num_rows == 3000
    assert keys(lake) == ["sortie/date=2026-06-29/part-0.parquet"]
    assert not keys(lake, TEMP_DIR), "a temp object was left behind"


def test_an_aborted_first_write_leaves_nothing_under_the_partition(lake):
    directory = lake.partition_dir("supply", "2026-06-28")
    writer = lake.open_writer(directory, SCHEMA)
    writer.write(table(1200))
    writer.abort()
    assert not lake.exists(f"{directory}/part-0.parquet")
    assert keys(lake) == []


def test_checkpoints_are_replaced_whole(lake):
    path = lake.checkpoint_path("readiness", "2026-06-29")
    lake.write_json(path, {"acknowledged": [[0, 10]]})
    lake.write_json(path, {"acknowledged": [[0, 10], [10, 20]]})
    assert lake.read_json(path) == {"acknowledged": [[0, 10], [10, 20]]}
    assert keys(lake) == ["readiness/checkpoints/date=2026-06-29.json"]


def test_a_missing_bucket_fails_at_once_naming_it_and_never_the_secret(s3_server):
    lake = ParquetLake(uri="s3://no-such-blade-bucket/lake", s3_endpoint=s3_server.base_url)
    with pytest.raises(LakeError) as caught:
        lake.path("x")
    message = str(caught.value)
    assert "s3://no-such-blade-bucket" in message and "does not exist" in message
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message


def test_an_unreachable_endpoint_is_a_lake_error_naming_it():
    lake = ParquetLake(uri="s3://blade/lake", s3_endpoint="http://127.0.0.1:9",
                       s3_max_attempts=2)  # the default 6 retry ~20 s before giving up
    with pytest.raises(LakeError, match=r"cannot reach the lake bucket s3://blade at "
                                        r"http://127\.0\.0\.1:9"):
        lake.path("x")


# ---- a store that throttles, fails and refuses (the fault proxy in front of moto) -----------

@pytest.fixture
def proxied(s3_server, s3_lake_uri):
    """The lake through the fault proxy (3 attempts per request: the default 6 wait ~19 s)."""
    with s3_fault_proxy(s3_server.base_url) as (proxy, url):
        yield proxy, ParquetLake(uri=s3_lake_uri, s3_endpoint=url, s3_max_attempts=3,
                                 row_group_rows=1_000)


def staged_bytes(lake: ParquetLake, directory: str) -> bytes:
    return lake.filesystem.open_input_file(f"{directory}/part-0.parquet").read()


def test_slowdown_and_5xx_bursts_are_retried_by_the_sdk_and_the_write_lands(proxied):
    proxy, lake = proxied
    directory = lake.partition_dir("maintenance", "2026-06-27")
    slow = proxy.fail("PUT", 503, "SlowDown", path_part="partNumber=", times=2)
    broken = proxy.fail("POST", 500, "InternalError", path_part="uploadId=", times=1)
    lake.write_parquet(directory, SCHEMA, [table(2500)], metadata={"valid": 2500})
    assert (slow.hits, broken.hits) == (2, 1)
    assert lake.footer_metadata(directory) == {"valid": 2500}
    lake.write_json(lake.checkpoint_path("maintenance", "2026-06-27"), {"acknowledged": []})
    assert keys(lake) == ["maintenance/checkpoints/date=2026-06-27.json",
                          "maintenance/date=2026-06-27/part-0.parquet"]


def test_a_store_that_keeps_throttling_is_a_transient_error_and_keeps_the_old_object(proxied):
    proxy, lake = proxied
    directory = lake.partition_dir("sortie", "2026-06-27")
    lake.write_parquet(directory, SCHEMA, [table(1000)])
    before = staged_bytes(lake, directory)
    rule = proxy.fail("PUT", 503, "SlowDown", path_part="partNumber=")
    with pytest.raises(LakeError) as caught:
        lake.write_parquet(directory, SCHEMA, [table(2000, 7)])
    error = caught.value
    assert error.transient and rule.hits == 3  # s3_max_attempts, then it gives up
    message = str(error)
    assert f"s3://{directory}/part-0.parquet" in message and "SLOW_DOWN" in message
    assert "transient" in message and "re-execute from failure" in message
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    proxy.clear()
    assert staged_bytes(lake, directory) == before
    assert keys(lake) == ["sortie/date=2026-06-27/part-0.parquet"]


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId"])
def test_a_refusal_fails_at_once_naming_the_key_and_never_the_secret(proxied, code):
    proxy, lake = proxied
    directory = lake.partition_dir("supply", "2026-06-27")
    lake.write_parquet(directory, SCHEMA, [table(1000)])
    before = staged_bytes(lake, directory)
    rule = proxy.fail("PUT", 403, code)
    with pytest.raises(LakeError) as caught:
        lake.write_parquet(directory, SCHEMA, [table(1500)])
    assert rule.hits == 1, "a fatal error was retried"
    error, message = caught.value, str(caught.value)
    assert not error.transient and "fatal" in message and "credentials" in message
    assert f"s3://{directory}/part-0.parquet" in message
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    with pytest.raises(LakeError, match=r"cannot write s3://.*checkpoints/date=2026-06-27\.json"):
        lake.write_json(lake.checkpoint_path("supply", "2026-06-27"), {"acknowledged": []})
    proxy.clear()
    assert staged_bytes(lake, directory) == before


def test_read_errors_are_lake_errors_naming_the_key(proxied):
    proxy, lake = proxied
    path = lake.checkpoint_path("readiness", "2026-06-27")
    lake.write_json(path, {"acknowledged": []})
    proxy.fail("HEAD", 403, "AccessDenied", times=1)
    with pytest.raises(LakeError, match=rf"cannot read s3://{path}: ACCESS_DENIED, a fatal"):
        lake.read_json(path)
    proxy.fail("GET", 503, "SlowDown")
    with pytest.raises(LakeError) as caught:
        lake.read_json(path)
    assert caught.value.transient and f"s3://{path}" in str(caught.value)
