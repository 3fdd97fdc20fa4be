"""The unmodified databricks-sql-connector against the mock warehouse, over loopback."""

from __future__ import annotations

import datetime as dt
import decimal
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import duckdb
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from databricks import sql as dbsql
from databricks.sql.exc import RequestError, ServerOperationError

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline_tests.conftest import BIG_ROWS, END_DATE, WAREHOUSE_TOKEN, warehouse_url

MAINT = "main.blade.blade_maintenance_data"


def connect(server, token=WAREHOUSE_TOKEN, **kwargs):
    url = warehouse_url(server)
    return dbsql.connect(
        server_hostname=f"127.0.0.1:{server.port}", http_path="/sql/1.0/warehouses/test",
        access_token=token, _connection_uri=url, enable_telemetry=False,
        _retry_stop_after_attempts_count=kwargs.pop("attempts", 3),
        _retry_stop_after_attempts_duration=kwargs.pop("duration", 10), _retry_delay_max=5,
        **kwargs)


@pytest.fixture(scope="module")
def reference() -> duckdb.DuckDBPyConnection:
    """The same generator run in-process: the rows the warehouse must return."""
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, BIG_ROWS, 7, end=END_DATE, schema="blade")
    return con


def ref_rows(reference, sql):
    return reference.cursor().execute(sql).fetchall()


def ref_table(reference, sql) -> pa.Table:
    return reference.cursor().sql(sql).to_arrow_table()


def _fingerprint(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by([(key, "ascending")] + [(c, "ascending") for c in table.column_names
                                                  if c != key])


def test_parameter_styles(big_warehouse, reference):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE priority = :p AND labor_hours > :h",
                    {"p": "HIGH", "h": 4.5})
        named = cur.fetchone().n
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE priority = ? AND labor_hours > ?",
                    ["HIGH", 4.5])
        positional = cur.fetchone().n
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE priority = :`param_1`",
                    {"param_1": "HIGH"})
        backticked = cur.fetchone().n
        start = dt.datetime(2026, 6, 1)
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE last_modified >= :start "
                    "AND last_modified < :end AND due_date >= :d",
                    {"start": start, "end": start + dt.timedelta(days=1), "d": dt.date(2026, 1, 1)})
        windowed = cur.fetchone().n
        cur.execute("SELECT :s AS s, :i AS i, :f AS f, :b AS b, :n AS n",
                    {"s": "x'y", "i": 3, "f": 0.5, "b": True, "n": None})
        assert tuple(cur.fetchone()) == ("x'y", 3, 0.5, True, None)
    [(expect,)] = ref_rows(
        reference, "SELECT count(*) FROM blade.blade_maintenance_data WHERE priority = 'HIGH' "
        "AND labor_hours > 4.5")
    assert named == positional == expect > 0
    assert backticked > named
    assert [(windowed,)] == ref_rows(
        reference, "SELECT count(*) FROM blade.blade_maintenance_data WHERE last_modified >= "
        "'2026-06-01' AND last_modified < '2026-06-02' AND due_date >= '2026-01-01'")
    assert windowed > 0


def test_every_fetch_style_on_small_and_large_results(big_warehouse):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        for limit in (10, 250_000):  # inline, then cloud fetch
            query = f"SELECT record_id FROM {MAINT} WHERE record_id IS NOT NULL " \
                    f"ORDER BY record_id LIMIT {limit}"
            cur.execute(query)
            first = cur.fetchone()
            some = cur.fetchmany(3)
            arrow_some = cur.fetchmany_arrow(5)
            rest = cur.fetchall_arrow()
            ids = [first[0]] + [r[0] for r in some] + arrow_some.column(0).to_pylist() \
                + rest.column(0).to_pylist()
            assert len(ids) == limit and ids == sorted(ids)
            cur.execute(query)
            assert [r[0] for r in cur.fetchall()] == ids
        assert cur.fetchone() is None


def test_cloud_fetch_of_a_million_rows_is_exact(big_warehouse, reference):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {MAINT}")
        got = cur.fetchall_arrow()
    expected = ref_table(reference, "SELECT * FROM blade.blade_maintenance_data")
    assert got.num_rows == BIG_ROWS
    assert got.schema.names == expected.schema.names
    assert _fingerprint(got, "record_id").equals(
        _fingerprint(expected.cast(got.schema), "record_id"))


def test_aggregates_group_by_and_casts(big_warehouse, reference):
    sql = ("SELECT priority, count(*) AS n, round(sum(labor_hours), 2) AS hours, "
           "CAST(max(due_date) AS STRING) AS last_due FROM {t} GROUP BY priority ORDER BY 1")
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.execute(sql.format(t=MAINT))
        got = [tuple(r) for r in cur.fetchall()]
    assert got == ref_rows(reference, sql.format(t="blade.blade_maintenance_data"))


def test_metadata_calls_describe_and_use(big_warehouse):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.catalogs()
        assert [r.TABLE_CAT for r in cur.fetchall()] == ["main"]
        cur.schemas(catalog_name="main")
        assert {r.TABLE_SCHEM for r in cur.fetchall()} >= {"blade", "default"}
        cur.tables(catalog_name="main", schema_name="blade", table_name="blade_%")
        assert sorted(r.TABLE_NAME for r in cur.fetchall()) == sorted(generator.TABLES.values())
        cur.columns(catalog_name="main", schema_name="blade", table_name="blade_supply_data")
        cols = {r.COLUMN_NAME: r.TYPE_NAME for r in cur.fetchall()}
        assert cols["unit_cost"] == "DECIMAL(12,2)" and cols["quantity_on_hand"] == "INT"
        assert cols["last_modified"] == "TIMESTAMP_NTZ"  # naive, as Databricks names it
        cur.execute("DESCRIBE TABLE EXTENDED main.blade.blade_readiness_data")
        rows = cur.fetchall()
        assert (rows[0].col_name, rows[0].data_type) == ("report_id", "string")
        assert any(r.col_name == "# Detailed Table Information" for r in rows)
        cur.execute("USE main.blade")
        cur.execute("SELECT count(*) FROM blade_sortie_data")
        assert cur.fetchone()[0] == BIG_ROWS
        cur.execute("SHOW CATALOGS")
        assert [tuple(r) for r in cur.fetchall()] == [("main",)]
        cur.execute("SHOW SCHEMAS IN main LIKE 'bla*'")
        assert [r.databaseName for r in cur.fetchall()] == ["blade"]
        cur.execute("SHOW TABLES IN main.blade LIKE '*sortie*|*supply*'")
        assert [(r.database, r.tableName, r.isTemporary) for r in cur.fetchall()] == [
            ("blade", "blade_sortie_data", False), ("blade", "blade_supply_data", False)]
        cur.execute("SHOW TABLES")  # the session's schema, after USE
        assert len(cur.fetchall()) == len(generator.TABLES)


@pytest.mark.parametrize(("sql", "error_class", "sql_state"), [
    (f"SELECT nope FROM {MAINT}", "UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703"),
    ("SELECT * FROM main.blade.no_such_table", "TABLE_OR_VIEW_NOT_FOUND", "42P01"),
    ("SELECT 1; SELECT 2", "PARSE_SYNTAX_ERROR", "42601"),
    ("SELEC 1", "PARSE_SYNTAX_ERROR", "42601"),
    (f"SELECT count(*) FROM {MAINT} WHERE regexp_matches(priority, '^H')",
     "UNRESOLVED_ROUTINE", "42883"),  # DuckDB's function, not Databricks'
])
def test_bad_sql_is_a_server_operation_error_with_databricks_error_class(
        big_warehouse, sql, error_class, sql_state):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        with pytest.raises(ServerOperationError) as caught:
            cur.execute(sql)
        message = str(caught.value)
        assert message.startswith(f"[{error_class}] ") and f"SQLSTATE: {sql_state}" in message
        cur.execute("SELECT 1 AS still_works")  # the session survives errors
        assert cur.fetchone()[0] == 1


@pytest.mark.parametrize(("where", "reference_where"), [
    ("priority RLIKE '^H'", "regexp_matches(priority, '^H')"),
    ("last_modified > date_sub(current_date(), 3650)",
     "last_modified > current_date - INTERVAL 3650 DAY"),
    ("array_contains(array('HIGH', 'LOW'), priority)", "priority IN ('HIGH', 'LOW')"),
    ("named_struct('p', priority).p = 'LOW' AND due_date < DATE'2026-06-01' + INTERVAL 2 DAYS",
     "priority = 'LOW' AND due_date < DATE '2026-06-03'"),
])
def test_databricks_filters_run_through_the_connector(big_warehouse, reference, where,
                                                      reference_where):
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {MAINT} WHERE {where}")
        [(count,)] = cur.fetchall()
    assert 0 < count == ref_rows(reference, "SELECT count(*) FROM "
                                            f"blade.blade_maintenance_data WHERE "
                                            f"{reference_where}")[0][0]


def test_bad_token_is_refused_at_once(big_warehouse):
    started = time.perf_counter()
    with pytest.raises(RequestError, match="Invalid access token"):
        connect(big_warehouse, token="wrong-token", attempts=30, duration=900)
    assert time.perf_counter() - started < 3  # a 401 is never retried


def test_missing_token_is_a_401_with_a_reason(big_warehouse):
    # The connector itself refuses an empty token, so speak HTTP directly.
    resp = httpx.post(warehouse_url(big_warehouse), content=b"\x80\x01\x00\x01",
                      headers={"Content-Type": "application/x-thrift"})
    assert resp.status_code == 401
    assert resp.headers["x-databricks-reason-phrase"] == "Missing access token."


def test_dml_changes_are_seen_by_later_queries(start_warehouse):
    server = start_warehouse(1_000)
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("UPDATE main.blade.blade_supply_data SET quantity_on_hand = 4242 "
                    "WHERE part_number IN (SELECT part_number FROM main.blade.blade_supply_data "
                    "WHERE part_number IS NOT NULL ORDER BY 1 LIMIT 3)")
        assert cur.rowcount == 3  # numModifiedRows, as a warehouse reports it
        assert [tuple(r) for r in cur.fetchall()] == [(3,)]
        assert [d[0] for d in cur.description] == ["num_affected_rows"]
        cur.execute("SELECT count(*) FROM main.blade.blade_supply_data "
                    "WHERE quantity_on_hand = 4242")
        assert cur.fetchone()[0] == 3 and cur.rowcount == -1  # a query: no count
        cur.execute("INSERT INTO main.blade.blade_supply_data BY NAME SELECT * FROM "
                    "main.blade.blade_supply_data WHERE quantity_on_hand = 4242")
        assert cur.rowcount == 3 and [d[0] for d in cur.description] == [
            "num_affected_rows", "num_inserted_rows"]
        for ddl in ("CREATE TABLE main.blade.notes (part_number STRING, note STRING) "
                    "USING DELTA", "ALTER TABLE main.blade.notes ADD COLUMN seen DATE",
                    "USE CATALOG main", "USE SCHEMA blade"):
            cur.execute(ddl)
        cur.execute("MERGE INTO notes AS t USING (SELECT DISTINCT part_number FROM "
                    "blade_supply_data WHERE quantity_on_hand = 4242) AS s "
                    "ON t.part_number = s.part_number WHEN MATCHED THEN UPDATE SET note = 'x' "
                    "WHEN NOT MATCHED THEN INSERT (part_number, note, seen) "
                    "VALUES (s.part_number, 'new', current_date())")
        assert cur.rowcount == 3
        cur.execute("ALTER TABLE notes DROP COLUMN seen")
        cur.execute("SELECT note, count(*) FROM main.blade.notes GROUP BY note")
        assert [tuple(r) for r in cur.fetchall()] == [("new", 3)]


def test_concurrent_connections(big_warehouse, reference):
    queries = [
        (f"SELECT * FROM {MAINT} WHERE last_modified >= '2026-01-01'", "record_id"),
        ("SELECT * FROM main.blade.blade_sortie_data WHERE base LIKE '%AFB%'", "sortie_id"),
        ("SELECT * FROM main.blade.blade_supply_data LIMIT 50", None),
        ("SELECT count(*) AS n FROM main.blade.blade_readiness_data", None),
    ] * 2

    def run(item):
        query, _ = item
        with connect(big_warehouse) as conn, conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall_arrow()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, queries))
    for (query, key), got in zip(queries, results, strict=True):
        local = query.replace("main.blade.", "blade.")
        expected = ref_table(reference, local)
        assert got.num_rows == expected.num_rows
        if key:
            assert pc.sum(pc.utf8_length(got.column(key))).as_py() == \
                pc.sum(pc.utf8_length(expected.column(key))).as_py()


@pytest.mark.slow
def test_transient_503s_are_retried_by_the_connector(start_warehouse):
    server = start_warehouse(1_000, "--fail-rate", "0.5", "--fault-seed", "3",
                             "--latency-ms", "50")
    with connect(server, attempts=10, duration=120) as conn, conn.cursor() as cur:
        for _ in range(3):  # fault seed 3 fails the 1st and 3rd ExecuteStatement calls
            cur.execute("SELECT count(*) FROM main.blade.blade_sortie_data")
            assert cur.fetchone()[0] == 1_000
    assert server.log_text().count("injected HTTP 503") >= 2


def test_change_feed_inserts_and_modifies_rows(start_warehouse):
    server = start_warehouse(1_000, "--change-interval", "0.5", "--change-rows", "4")
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
    deadline = time.monotonic() + 20
    with connect(server) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT count(*) AS changed, count(*) - count(DISTINCT sortie_id) AS dup "
                        "FROM main.blade.blade_sortie_data WHERE last_modified >= :t",
                        {"t": started})
            row = cur.fetchone()
            if row.changed >= 16:
                break
            time.sleep(0.5)
        assert row.changed >= 16
        cur.execute("SELECT count(*) FROM main.blade.blade_sortie_data")
        assert cur.fetchone()[0] > 1_000  # inserts, not only updates


TYPED = ("SELECT CAST(1.5 AS DECIMAL(10, 2)) AS d, TIMESTAMP'2025-01-02 03:04:05' AS ts, "
         "CAST('2025-01-02 03:04:05' AS TIMESTAMP_NTZ) AS ntz, DATE'2025-01-02' AS dt, "
         "array(1, 2) AS a, map('k', 1) AS m, named_struct('x', 1, 'y', 'z') AS s, "
         "CAST(7 AS BIGINT) AS b, true AS bo, X'AB' AS bin")


@pytest.mark.parametrize("rows", [1, 300_000], ids=["inline", "cloud-fetch"])
def test_result_types_as_databricks_returns_them(big_warehouse, rows):
    """Decimal, TIMESTAMP (UTC) and TIMESTAMP_NTZ, DATE, ARRAY, MAP, STRUCT, BIGINT, BOOLEAN,
    BINARY: the Arrow types and Python values the connector gives for a warehouse's answer, in
    an inline result and in cloud-fetch files (``range(n)``'s column is ``id``, as in
    Databricks)."""
    sql = TYPED + ("" if rows == 1 else f", id FROM range({rows})")
    with connect(big_warehouse) as conn, conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetchall_arrow()
        described = [(d[0], d[1]) for d in cur.description]
    # the values from Arrow: the connector's Row path goes through pandas, whose conversion of
    # zoned timestamps turns naive once pandera.polars is imported (seen in the full suite)
    first = SimpleNamespace(**table.slice(0, 1).to_pylist()[0])
    assert table.num_rows == rows
    types = {f.name: f.type for f in table.schema}
    assert types["d"] == pa.decimal128(10, 2) and types["dt"] == pa.date32()
    assert types["ts"] == pa.timestamp("us", tz="Etc/UTC") and types["ntz"] == pa.timestamp("us")
    assert types["a"] == pa.list_(pa.int32()) and pa.types.is_map(types["m"])
    assert types["s"] == pa.struct([("x", pa.int32()), ("y", pa.string())])
    assert (types["b"], types["bo"], types["bin"]) == (pa.int64(), pa.bool_(), pa.binary())
    assert first.d == decimal.Decimal("1.50") and first.dt == dt.date(2025, 1, 2)
    assert first.ts == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert first.ntz == dt.datetime(2025, 1, 2, 3, 4, 5) and first.ntz.tzinfo is None
    assert first.a == [1, 2] and first.m == [("k", 1)]
    assert first.s == {"x": 1, "y": "z"} and first.bin == b"\xab"
    assert described[:7] == [("d", "decimal"), ("ts", "timestamp"), ("ntz", "timestamp"),
                             ("dt", "date"), ("a", "array"), ("m", "map"), ("s", "struct")]
