"""How the mock warehouse runs statements for the unmodified databricks-sql-connector, over
Thrift and the Statement Execution API: in the background (cancel from another thread, the
async API), ``row_limit``, LZ4-compressed results as the client allows, and DDL's answer."""

from __future__ import annotations

import threading
import time

import pytest
from databricks.sql.backend.types import CommandState
from databricks.sql.exc import (
    DatabaseError,
    OperationalError,
    ProgrammingError,
    ServerOperationError,
)

from blade_pipeline.devservices.warehouse.service import DIRECT_RESULTS_WAIT_SECONDS
from blade_pipeline_tests.warehouse_client import BACKENDS, connect

#: A cross join that would run for hours: only a cancel ends it.
ENDLESS = ("SELECT count(*) AS n FROM range(200000000) a CROSS JOIN range(100000) b "
           "WHERE (a.id * 7 + b.id) % 1000003 = 1")
#: ~6.6 MB in Arrow: past the inline limits, so served as cloud-fetch files / external links.
LABELLED = "SELECT id, concat('row-', CAST(id AS STRING)) AS label FROM range({n})"
#: What Databricks (Spark's Thrift server) answers a statement without output with.
NO_OUTPUT = [("Result", "string", None, None, None, None, None)]


@pytest.fixture(scope="module")
def warehouse(start_warehouse):
    return start_warehouse(2_000)



@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cancel_from_another_thread_stops_a_running_execute(warehouse):
    """``cursor.execute`` of an endless statement, on each backend at once: the execute
    answers RUNNING after the server's wait (Thrift: DIRECT_RESULTS_WAIT_SECONDS; the API: the
    connector's 10 s ``wait_timeout``), ``cursor.cancel()`` from another thread interrupts it,
    and the blocked execute raises what connector 4.9 raises for a canceled statement."""
    runs = {}
    for mode in BACKENDS:
        conn = connect(warehouse, mode)
        cur = conn.cursor()
        outcome: dict[str, BaseException] = {}

        def run(cur=cur, outcome=outcome) -> None:
            try:
                cur.execute(ENDLESS)
            except Exception as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        runs[mode] = (conn, cur, thread, outcome, time.monotonic())
    try:
        for mode, (_, cur, thread, outcome, started) in runs.items():
            while cur.active_command_id is None and thread.is_alive():
                time.sleep(0.05)
            answered = time.monotonic() - started
            assert answered >= (DIRECT_RESULTS_WAIT_SECONDS if mode == "thrift" else 9), mode
            cur.cancel()
            thread.join(10)
            assert not thread.is_alive(), f"{mode}: execute still blocked after the cancel"
            error = outcome.get("error")
            if mode == "thrift":  # GetResultSetMetadata of the canceled operation fails
                assert type(error) is DatabaseError and "CANCELED" in str(error)
            else:  # a CANCELED statement has no manifest: the connector cannot read a result
                assert isinstance(error, ProgrammingError)
            cur.execute("SELECT 1 AS ok")
            assert cur.fetchone().ok == 1
    finally:
        for conn, cur, _, _, _ in runs.values():
            cur.close()
            conn.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", BACKENDS)
def test_execute_async(warehouse, mode):
    """``execute_async`` answers at once; ``get_query_state`` follows the statement;
    ``get_async_execution_result`` fetches a finished one; a running one is canceled (the
    state turns CANCELLED and its result cannot be fetched)."""
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute_async(LABELLED.format(n=50_000))
        deadline = time.monotonic() + 10
        while cur.is_query_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cur.get_query_state() == CommandState.SUCCEEDED
        cur.get_async_execution_result()
        rows = cur.fetchall()
        assert len(rows) == 50_000 and rows[-1].label == "row-49999"

        started = time.monotonic()
        cur.execute_async(ENDLESS)
        assert time.monotonic() - started < 2
        assert cur.get_query_state() in (CommandState.PENDING, CommandState.RUNNING)
        cur.cancel()
        while cur.is_query_pending() and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert cur.get_query_state() == CommandState.CANCELLED
        with pytest.raises(OperationalError, match="CANCELLED"):
            cur.get_async_execution_result()
        cur.execute("SELECT 2 AS ok")
        assert cur.fetchone().ok == 2


@pytest.mark.parametrize("mode", BACKENDS)
def test_row_limit(warehouse, mode):
    """``cursor(row_limit=N)`` caps the result at N rows, inline and as cloud-fetch files."""
    with connect(warehouse, mode) as conn:
        with conn.cursor(row_limit=5) as cur:
            cur.execute("SELECT id FROM range(100) ORDER BY id")
            assert [r.id for r in cur.fetchall()] == [0, 1, 2, 3, 4]
        with conn.cursor(row_limit=250_000) as cur:
            cur.execute(LABELLED.format(n=300_000))
            table = cur.fetchall_arrow()
            assert table.num_rows == 250_000
            assert table.column("label")[-1].as_py() == "row-249999"
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM range(100)")
            assert len(cur.fetchall()) == 100


@pytest.mark.parametrize("mode", BACKENDS)
@pytest.mark.parametrize("lz4", [True, False])
def test_lz4_results_as_the_client_allows(warehouse, mode, lz4):
    """With ``enable_query_result_lz4_compression`` (default on) the warehouse sends
    LZ4-compressed Arrow, inline and in files; without, uncompressed. The connector trusts the
    result metadata's flag: a wrong one would fail to decompress or fail to decode."""
    with connect(warehouse, mode, enable_query_result_lz4_compression=lz4) as conn, \
            conn.cursor() as cur:
        for n in (1_000, 300_000):
            cur.execute(LABELLED.format(n=n))
            assert cur.active_result_set.lz4_compressed is lz4
            table = cur.fetchall_arrow()
            assert table.num_rows == n and table.column("label")[n - 1].as_py() == f"row-{n - 1}"


@pytest.mark.parametrize("mode", BACKENDS)
def test_ddl_answers_no_output(warehouse, mode):
    """CREATE, ALTER and DROP answer one STRING column ``Result`` and no rows, as Databricks
    does (DuckDB's own answer is a ``Count`` or ``Success`` column)."""
    table = f"main.default.ddl_answer_{mode}"
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        for sql in (f"CREATE TABLE {table} (n INT) USING DELTA",
                    f"ALTER TABLE {table} ADD COLUMN m STRING",
                    f"DROP TABLE {table}"):
            cur.execute(sql)
            assert cur.description == NO_OUTPUT, sql
            assert cur.fetchall() == [], sql
            assert cur.rowcount == -1


@pytest.mark.parametrize("mode", BACKENDS)
def test_statement_timeout_cancels_with_databricks_error(warehouse, mode):
    """A statement past the session's STATEMENT_TIMEOUT (SET, or the connector's
    session_configuration) is canceled and fails with QUERY_EXECUTION_TIMEOUT_EXCEEDED 57KD0;
    the session goes on."""
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute("SET STATEMENT_TIMEOUT = 1")
        started = time.monotonic()
        with pytest.raises(ServerOperationError, match=r"QUERY_EXECUTION_TIMEOUT_EXCEEDED.*"
                           r"\(1s\).*SQLSTATE: 57KD0"):
            cur.execute(ENDLESS)
        assert time.monotonic() - started < 4
        cur.execute("SELECT 3 AS ok")
        assert cur.fetchone().ok == 3
    with connect(warehouse, mode, session_configuration={"STATEMENT_TIMEOUT": 1}) as conn, \
            conn.cursor() as cur, pytest.raises(ServerOperationError, match="57KD0"):
        cur.execute(ENDLESS)
