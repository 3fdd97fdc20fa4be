"""The mock warehouse's session settings, ANSI mode, date/timestamp literals and session time
zone, through the unmodified databricks-sql-connector over Thrift and the Statement Execution
API (cases after the connector's own end-to-end timestamp tests against real warehouses)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pyarrow as pa
import pytest
from databricks.sql.exc import Error, ServerOperationError

from blade_pipeline_tests.warehouse_client import BACKENDS, connect

MODES = ["thrift", "sea", "sea-json"]
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
#: Strings Spark reads as timestamps (and one it cannot), as the connector's e2e suite has them.
TIMESTAMPS = [
    ("2021-09-30 11:27:35.123+04:00", dt.datetime(2021, 9, 30, 7, 27, 35, 123000)),
    ("2021-09-30 11:27:35", dt.datetime(2021, 9, 30, 11, 27, 35)),
    ("2021-09-30 11:27", dt.datetime(2021, 9, 30, 11, 27)),
    ("2021-09-30 11", dt.datetime(2021, 9, 30, 11)),
    ("2021-09", dt.datetime(2021, 9, 1)),
    ("2021", dt.datetime(2021, 1, 1)),
    ("9999-12-31T15:59:59", dt.datetime(9999, 12, 31, 15, 59, 59)),
    ("9999-99-31T15:59:59", None),
]
DATES = [("2021-09-30", dt.date(2021, 9, 30)), ("2021-09", dt.date(2021, 9, 1)),
         ("2021", dt.date(2021, 1, 1)), ("9999-99-31", None)]


def instant(value: object) -> object:
    """A Row's timestamp as an aware datetime. The connector turns Arrow into Rows through
    pandas, and once ``pandera.typing`` is imported (as the pipeline's modules do, earlier in a
    test worker) pyarrow's ``to_pandas`` answers a zoned column's values as naive UTC."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@pytest.fixture(scope="module")
def warehouse(start_warehouse):
    return start_warehouse(2_000)


def failure(cur, sql: str) -> str:
    with pytest.raises(ServerOperationError) as info:
        cur.execute(sql)
    return str(info.value)


@pytest.mark.parametrize("mode", BACKENDS)
def test_set_get_list_and_reset(warehouse, mode):
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute("SET ansi_mode")
        assert [tuple(r) for r in cur.fetchall()] == [("ansi_mode", "true")]
        assert [d[0] for d in cur.description] == ["key", "value"]
        cur.execute("SET ansi_mode = false")
        assert [tuple(r) for r in cur.fetchall()] == [("ansi_mode", "false")]
        cur.execute("SET TIMEZONE = America/Los_Angeles")
        cur.execute("SET")
        assert sorted(tuple(r) for r in cur.fetchall()) == [
            ("TIMEZONE", "America/Los_Angeles"), ("ansi_mode", "false")]
        cur.execute("SELECT CAST('x' AS INT) AS n")  # ANSI off: NULL
        assert cur.fetchone().n is None
        cur.execute("RESET")
        cur.execute("SET")
        assert cur.fetchall() == []
        assert "[CAST_INVALID_INPUT]" in failure(cur, "SELECT CAST('x' AS INT)")
        assert "SQLSTATE: 42K0I" in failure(cur, "SET spark.sql.shuffle.partitions = 8")
        assert "[INVALID_CONF_VALUE.TIME_ZONE]" in failure(cur, "SET TIME ZONE 'Mars/Olympus'")
        assert "[INVALID_CONF_VALUE]" in failure(cur, "SET ansi_mode = maybe")


@pytest.mark.parametrize("mode", BACKENDS)
def test_ansi_mode_errors(warehouse, mode):
    """ANSI mode (the default): Databricks' error classes and SQLSTATEs, not NULLs."""
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        assert "SQLSTATE: 22018" in failure(cur, "SELECT CAST('x' AS INT)")
        assert "[CAST_INVALID_INPUT]" in failure(cur, "SELECT to_date('2021-02-30')")
        assert "[DIVIDE_BY_ZERO]" in failure(cur, "SELECT id / (id - id) FROM range(3)")
        assert "SQLSTATE: 22012" in failure(cur, "SELECT 1 / 0")
        assert "[ARITHMETIC_OVERFLOW]" in failure(cur, "SELECT 2147483647 + CAST(id AS INT) "
                                                  "FROM range(2)")
        assert "[INVALID_TYPED_LITERAL]" in failure(cur, "SELECT DATE '2021-02-30'")


@pytest.mark.parametrize("mode", MODES)
def test_spark_date_and_timestamp_strings_without_ansi(warehouse, mode):
    """Partial dates fill in the first month/day; with ANSI_MODE false what Spark cannot read is
    NULL (the connector's own e2e cases, run with ``session_configuration``)."""
    with connect(warehouse, mode, session_configuration={"ansi_mode": False}) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(f"TIMESTAMP('{text}')" for text, _ in TIMESTAMPS))
        assert [instant(v) for v in cur.fetchone()] == [ts and ts.replace(tzinfo=dt.UTC)
                                                        for _, ts in TIMESTAMPS]
        cur.execute("SELECT " + ", ".join(f"DATE('{text}')" for text, _ in DATES))
        assert list(cur.fetchone()) == [day for _, day in DATES]
        cur.execute("SELECT DATE '2021-09' AS a, TIMESTAMP '2021' AS b, 1 / 0 AS c")
        assert tuple(map(instant, cur.fetchone())) == (dt.date(2021, 9, 1),
                                         dt.datetime(2021, 1, 1, tzinfo=dt.UTC), None)


@pytest.mark.parametrize("mode", MODES)
def test_session_time_zone(warehouse, mode):
    """Timestamps without an offset are read in the session time zone, and come back zoned in
    it over Arrow (the connector's test_timezone_with_timestamp)."""
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'Europe/Amsterdam'")
        expected = dt.datetime(2022, 3, 2, 12, 54, 56, tzinfo=AMSTERDAM)
        cur.execute("SELECT CAST('2022-03-02 12:54:56' AS TIMESTAMP) AS t")
        assert instant(cur.fetchone().t) == expected
        if mode != "sea-json":
            cur.execute("SELECT CAST('2022-03-02 12:54:56' AS TIMESTAMP) AS t, "
                        "TIMESTAMP '2022-03-02 12:54:56' AS u, current_timestamp() AS now")
            table = cur.fetchall_arrow()
            zoned = pa.timestamp("us", tz="Europe/Amsterdam")
            assert table.schema.types == [zoned, zoned, zoned]
            assert table.column("u")[0].value == expected.timestamp() * 1_000_000
        cur.execute("SET TIME ZONE LOCAL")
        cur.execute("SELECT TIMESTAMP '2022-03-02 12:54:56' AS t")
        assert instant(cur.fetchone().t) == dt.datetime(2022, 3, 2, 12, 54, 56, tzinfo=dt.UTC)


@pytest.mark.parametrize("mode", BACKENDS)
def test_session_configuration_timezone(warehouse, mode):
    confs = {"TIMEZONE": "America/Los_Angeles", "STATEMENT_TIMEOUT": 60}
    with connect(warehouse, mode, session_configuration=confs) as conn, conn.cursor() as cur:
        cur.execute("SELECT TIMESTAMP '2021-06-01 08:00:00' AS t, current_timestamp() AS now, "
                    "current_timezone() AS tz")
        table = cur.fetchall_arrow()
        assert table.schema.field("now").type == pa.timestamp("us", tz="America/Los_Angeles")
        assert table.column("t")[0].as_py() == dt.datetime(2021, 6, 1, 15, tzinfo=dt.UTC)
        assert table.column("tz")[0].as_py() == "America/Los_Angeles"
        cur.execute("SET TIMEZONE")
        assert tuple(cur.fetchone()) == ("TIMEZONE", "America/Los_Angeles")
    with pytest.raises(Error) as refused:  # the SEA client shows no more than the HTTP 400
        connect(warehouse, mode, session_configuration={"TIMEZONE": "Nowhere/Atall"})
    assert mode == "sea" or "INVALID_CONF_VALUE.TIME_ZONE" in str(refused.value)


@pytest.mark.parametrize("mode", BACKENDS)
def test_date_add_and_date_sub_answer_dates(warehouse, mode):
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute("SELECT date_add(DATE '2021-01-31', 1) AS a, date_sub(DATE '2021-03', 1) AS b")
        table = cur.fetchall_arrow()
        assert table.schema.types == [pa.date32(), pa.date32()]
        assert table.to_pylist() == [{"a": dt.date(2021, 2, 1), "b": dt.date(2021, 2, 28)}]
