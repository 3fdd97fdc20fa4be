"""ParquetLake: atomic partition writes, footers, checkpoints (local filesystem)."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blade_pipeline.storage.lake import LakeError, ParquetLake, lake_error

SCHEMA = pa.schema([("x", pa.int64())])


def batches(n: int, fail_after: int | None = None):
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("source broke mid-stream")
        yield pa.record_batch({"x": pa.array([i] * 10, pa.int64())})


def test_write_replaces_the_partition_and_keeps_the_footer(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    directory = lake.partition_dir("t", "2026-01-01")
    lake.write_parquet(directory, SCHEMA, batches(3), metadata={"run": 1})
    result = lake.write_parquet(directory, SCHEMA, batches(5), metadata={"run": 2})
    assert result.rows == 50 and pq.read_table(result.path).num_rows == 50
    assert lake.footer_metadata(directory) == {"run": 2}
    assert sorted(os.listdir(directory)) == ["part-0.parquet"]  # no temp files left


def test_a_failure_mid_stream_leaves_the_old_partition_untouched(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    directory = lake.partition_dir("t", "2026-01-01")
    lake.write_parquet(directory, SCHEMA, batches(2), metadata={"run": 1})
    with pytest.raises(RuntimeError, match="mid-stream"):
        lake.write_parquet(directory, SCHEMA, batches(5, fail_after=3), metadata={"run": 2})
    assert lake.footer_metadata(directory) == {"run": 1}
    assert pq.read_table(f"{directory}/part-0.parquet").num_rows == 20
    assert sorted(os.listdir(directory)) == ["part-0.parquet"]


def test_an_unwritable_lake_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the lake should be")
    lake = ParquetLake(uri=str(blocker))
    with pytest.raises(LakeError, match=r"cannot write .*not-a-dir"):
        lake.write_parquet(lake.partition_dir("t", "2026-01-01"), SCHEMA, batches(1))


def test_checkpoints_round_trip(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    path = lake.checkpoint_path("t", "2026-01-01")
    assert lake.read_json(path) is None
    lake.write_json(path, {"acknowledged": [0, 1]})
    assert lake.read_json(path) == {"acknowledged": [0, 1]}


@pytest.mark.parametrize(("text", "transient"), [
    ("AWS Error SLOW_DOWN during UploadPart operation: Please reduce your request rate.", True),
    ("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 56", True),
    ("AWS Error UNKNOWN (HTTP status 503) during PutObject operation: x", True),
    ("AWS Error UNKNOWN (HTTP status 400) during PutObject operation: x", False),
    ("AWS Error ACCESS_DENIED during HeadObject operation: No response body.", False),
    ("AWS Error NO_SUCH_BUCKET during CreateMultipartUpload operation: gone", False),
])
def test_object_store_errors_are_classified_by_their_aws_code(text, transient):
    error = lake_error("write", "s3://b/k", OSError(text), attempts=4)
    assert error.transient is transient
    message = str(error)
    assert message.startswith("cannot write s3://b/k: ") and text in message
    assert ("transient" in message) is transient and ("fatal" in message) is not transient


def test_local_errors_keep_their_strerror():
    error = lake_error("write", "/lake/x", OSError(28, "No space left on device"))
    assert str(error) == "cannot write /lake/x: No space left on device"
    assert not error.transient
