"""Mock warehouse parts: parameter binding and Arrow types the connector can read."""

import datetime as dt
import decimal

import pyarrow as pa
import pytest
from databricks.sql.parameters.native import dbsql_parameter_from_primitive

from blade_pipeline.devservices.warehouse.arrow_types import client_schema, thrift_schema, to_client
from blade_pipeline.devservices.warehouse.parameters import ParameterError, bind_values
from blade_pipeline.devservices.warehouse.results import ResultStream


def _tspark(value, name=None):
    param = dbsql_parameter_from_primitive(value, name=name)
    return param.as_tspark_param(named=name is not None)


@pytest.mark.parametrize("value", [
    7, 2**40, 1.5, "text", True, None, dt.date(2025, 3, 1), dt.datetime(2025, 3, 1, 12, 30),
    decimal.Decimal("12.34"),
])
def test_named_parameters_round_trip_their_python_type(value):
    bound = bind_values([_tspark(value, name="p")])
    assert bound == {"p": value}


def test_aware_timestamps_become_utc():
    aware = dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert bind_values([_tspark(aware, name="t")]) == {"t": dt.datetime(2025, 3, 1, 10)}


def test_positional_parameters_keep_their_order():
    assert bind_values([_tspark(1), _tspark("a")]) == [1, "a"]


def test_mixed_or_bad_parameters_are_rejected():
    with pytest.raises(ParameterError, match="mixed"):
        bind_values([_tspark(1, name="a"), _tspark(2)])
    bad = _tspark(1, name="n")
    bad.value.stringValue = "not-a-number"
    with pytest.raises(ParameterError, match="not-a-number"):
        bind_values([bad])


def test_client_types_replace_what_the_connector_cannot_read():
    schema = pa.schema([
        ("d", pa.dictionary(pa.int32(), pa.string())), ("u", pa.uint32()), ("u64", pa.uint64()),
        ("t", pa.time64("us")), ("ls", pa.large_string()), ("ns", pa.timestamp("ns")),
        ("l", pa.large_list(pa.uint8())),
    ])
    out = client_schema(schema)
    assert [f.type for f in out] == [
        pa.string(), pa.int64(), pa.decimal128(20, 0), pa.string(), pa.string(),
        pa.timestamp("us"), pa.list_(pa.int16()),
    ]
    type_ids = [c.typeDesc.types[0].primitiveEntry.type for c in thrift_schema(out).columns]
    assert type_ids == [7, 4, 15, 7, 7, 8, 10]  # STRING BIGINT DECIMAL ... TIMESTAMP ARRAY
    batch = pa.RecordBatch.from_pydict(
        {"d": pa.array(["a", "b"]).dictionary_encode(), "u": pa.array([1, 2], pa.uint32()),
         "u64": pa.array([1, 2**63], pa.uint64()), "t": pa.array([1, 2], pa.time64("us")),
         "ls": pa.array(["x", "y"], pa.large_string()),
         "ns": pa.array([1, 2], pa.timestamp("ns")),
         "l": pa.array([[1], [2, 3]], pa.large_list(pa.uint8()))}, schema=schema)
    cast = to_client(batch, out)
    assert cast.schema == out
    assert cast.column("u64").to_pylist() == [decimal.Decimal(1), decimal.Decimal(2**63)]


def test_result_stream_pages_exactly():
    table = pa.table({"a": pa.array(range(10_000))})
    stream = ResultStream(pa.RecordBatchReader.from_batches(table.schema,
                                                            table.to_batches(max_chunksize=3000)))
    first = stream.take(max_rows=4500, max_bytes=2**30)
    assert sum(b.num_rows for b in first) == 4500 and stream.offset == 4500
    files = stream.next_files(max_bytes=2**30)
    assert sum(f.row_count for f in files) == 5500 and files[0].start_row == 4500
    read = pa.ipc.open_stream(files[0].data).read_all()
    assert read.column("a")[0].as_py() == 4500
    assert not stream.has_more


def test_result_files_per_page_can_be_capped(monkeypatch):
    monkeypatch.setattr("blade_pipeline.devservices.warehouse.results.FILE_TARGET_BYTES", 8_000)
    table = pa.table({"a": pa.array(range(10_000), pa.int64())})
    stream = ResultStream(pa.RecordBatchReader.from_batches(table.schema,
                                                            table.to_batches(max_chunksize=1000)))
    first = stream.next_files(max_bytes=2**30, max_files=1)
    second = stream.next_files(max_bytes=2**30)
    assert len(first) == 1 and len(second) > 1
    assert second[0].start_row == first[0].row_count
    files = first + second
    while stream.has_more:
        files += stream.next_files(max_bytes=2**30)
    read = pa.concat_tables(pa.ipc.open_stream(f.data).read_all() for f in files)
    assert read.equals(table)
