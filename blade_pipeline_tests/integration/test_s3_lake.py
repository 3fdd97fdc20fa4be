"""The lake on a real S3 API (moto's server on loopback): writes are atomic, failures leave
the previous object exactly as it was and nothing under the partition's prefix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from blade_pipeline.resources.lake import TEMP_DIR, LakeError, ParquetLake
from blade_pipeline_tests.conftest import S3_ENV

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
    fs, _ = lake._filesystem()
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
