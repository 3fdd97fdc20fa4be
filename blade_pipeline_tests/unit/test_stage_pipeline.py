"""staging.stage over its three threads (extract + validate | build | write), without servers."""

import datetime as dt
import threading
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.steps import items, staging
from blade_pipeline.steps.pipelining import WriteBehind, prefetch
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.unit.test_items_and_validation import LM, RUN, batch, readiness

SOURCE = source_for("readiness")


def partition(n: int, start: int = 0) -> pa.RecordBatch:
    """``n`` readiness rows; every third one has a bad status."""
    return batch([readiness(report_id=str(start + i).zfill(9),
                            status="BROKEN" if (start + i) % 3 == 0 else "FMC")
                  for i in range(n)])


def stage(lake: ParquetLake, batches, duplicates=None) -> staging.StageResult:
    return staging.stage(SOURCE, iter(batches), lake, lake.partition_dir("readiness", "d"),
                        lake.partition_dir("readiness", "d", "quarantine"), RUN,
                        duplicates=duplicates)


def leftovers(lake: ParquetLake) -> list[str]:
    return sorted(p.name for p in Path(lake.uri).rglob("*") if p.is_file())


def test_every_batch_is_split_into_items_and_quarantine_in_order(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    result = stage(lake, [partition(40, 0), partition(7, 40), partition(53, 47)])
    items = pq.read_table(result.path)
    quarantine = pq.read_table(result.quarantine_path)
    assert (result.extracted, result.valid, result.quarantined) == (100, 66, 34)
    assert items.column("item_id").to_pylist() == [
        f"READY-{i:09d}" for i in range(100) if i % 3]
    assert quarantine.column("_row").to_pylist() == list(range(0, 100, 3))
    assert result.reasons == {"status: isin(['FMC', 'PMC', 'NMC'])": 34}


def test_batches_larger_than_a_row_group_are_built_and_written_a_row_group_at_a_time(tmp_path):
    lake = ParquetLake(uri=str(tmp_path), row_group_rows=1_000)
    result = stage(lake, [partition(2_500), partition(10, 2_500)])
    staged = pq.ParquetFile(result.path)
    assert [staged.metadata.row_group(i).num_rows for i in range(staged.num_row_groups)] == [
        len([i for i in range(a, b) if i % 3]) for a, b in
        ((0, 1_000), (1_000, 2_000), (2_000, 2_500), (2_500, 2_510))]
    assert staged.read().column("item_id").to_pylist() == [
        f"READY-{i:09d}" for i in range(2_510) if i % 3]
    assert pq.read_table(result.quarantine_path).column("_row").to_pylist() == list(
        range(0, 2_510, 3))


def test_an_extract_failure_mid_partition_publishes_nothing(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    before = stage(lake, [partition(10)])

    def failing():
        yield partition(10, 100)
        raise ConnectionError("warehouse went away")

    with pytest.raises(ConnectionError, match="went away"):
        stage(lake, failing())
    assert pq.read_table(before.path).num_rows == before.valid  # the old partition stays
    assert not [name for name in leftovers(lake) if name.startswith(".tmp-")]


def test_a_build_failure_stops_the_extract_and_closes_it_before_stage_returns(tmp_path,
                                                                             monkeypatch):
    lake = ParquetLake(uri=str(tmp_path))
    closed = threading.Event()

    def endless():  # a warehouse cursor: its finally closes the connection
        try:
            start = 0
            while True:
                yield partition(10, start)
                start += 10
        finally:
            closed.set()

    def broken_build(self, raw, keep=None):
        raise MemoryError("no room for items")

    monkeypatch.setattr(items.ItemBuilder, "build", broken_build)
    with pytest.raises(MemoryError, match="no room"):
        stage(lake, endless())
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name in ("extract-validate", "stage-writer")]
    assert not leftovers(lake)


def test_a_duplicate_query_failure_reaches_the_caller_from_the_validating_thread(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    answer: Future[pa.Table] = Future()
    answer.set_exception(RuntimeError("duplicate-key query failed"))
    with pytest.raises(RuntimeError, match="duplicate-key query failed"):
        stage(lake, [partition(5)], duplicates=answer)
    assert not leftovers(lake)


def test_duplicates_are_resolved_across_batches_validated_in_the_background(tmp_path):
    lake = ParquetLake(uri=str(tmp_path))
    newer = LM + dt.timedelta(hours=1)
    dups = pa.table({"key": ["000000001"], "newest": pa.array([newer], pa.timestamp("us"))})
    first = batch([readiness(report_id="000000001"), readiness(report_id="000000002")])
    second = batch([readiness(report_id="000000001", last_modified=newer)])
    result = stage(lake, [first, second], duplicates=dups)
    items = pq.read_table(result.path).to_pylist()
    assert [(i["item_id"], i["last_modified"]) for i in items] == [
        ("READY-000000002", LM), ("READY-000000001", newer)]
    assert result.reasons == {"duplicate primary key": 1}


def test_prefetch_runs_ahead_and_reraises_the_producers_error():
    produced: list[int] = []

    def numbers():
        for i in range(3):
            produced.append(i)
            yield i
        raise ValueError("producer broke")

    got = []
    with pytest.raises(ValueError, match="producer broke"):
        for value in prefetch(numbers(), depth=1):
            got.append(value)
    assert got == [0, 1, 2] and produced == [0, 1, 2]


def test_prefetch_stops_the_producer_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    for value in prefetch(endless(), depth=2):
        if value == 5:
            break
    assert closed.wait(5)


def test_write_behind_reraises_the_first_consumer_error_and_drops_the_rest():
    seen: list[int] = []

    def consume(value: int) -> None:
        seen.append(value)
        if value == 1:
            raise OSError("disk full")

    writer: WriteBehind[int] = WriteBehind(consume)
    for value in range(3):
        try:
            writer.put(value)
        except OSError:
            break
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert seen == [0, 1]


@pytest.mark.parametrize(("batch_rows", "first"), [(0, None), (100, 0)])
def test_an_extract_batch_size_below_one_row_is_an_error_not_an_empty_result(batch_rows,
                                                                            first):
    warehouse = DatabricksWarehouse(url="http://127.0.0.1:9/sql/1.0/warehouses/x", token="t")
    with pytest.raises(ValueError, match="at least 1 row"):
        next(warehouse.stream_arrow("SELECT 1", batch_rows=batch_rows, first_batch_rows=first))


def test_a_batch_without_rows_holds_no_day():
    rows = partition(3)
    assert staging._day_runs(rows, "last_modified") == [(str(LM.date()), 0, 3)]
    assert staging._day_runs(rows.slice(0, 0), "last_modified") == []
