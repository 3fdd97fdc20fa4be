"""The mock warehouse's Statement Execution API: the unmodified databricks-sql-connector with
``use_sea=True`` (and the same cases over Thrift), and the REST calls themselves, over loopback."""

from __future__ import annotations

import datetime as dt
import decimal
import time

import httpx
import lz4.frame
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from databricks.sql.exc import RequestError, ServerOperationError

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline_tests.conftest import BIG_ROWS, WAREHOUSE_TOKEN
from blade_pipeline_tests.warehouse_client import BACKENDS, MODES, connect

MAINT = "main.blade.blade_maintenance_data"
AUTH = {"Authorization": f"Bearer {WAREHOUSE_TOKEN}"}
#: Rows of LABELLED whose result (~22 MB in Arrow) is cut into two chunks (~16 MiB each).
LARGE = 1_000_000
LABELLED = "SELECT id, concat('row-', CAST(id AS STRING)) AS label FROM range({n})"
#: ~34 MB in Arrow: over the 25 MiB limit of an INLINE result.
OVERSIZED = "SELECT id, repeat('x', 100) AS pad FROM range(300000)"
#: A cross join that would run for hours: only a cancel ends it.
ENDLESS = ("SELECT count(*) AS n FROM range(200000000) a CROSS JOIN range(100000) b "
           "WHERE (a.id * 7 + b.id) % 1000003 = 1")


def api(server, path: str) -> str:
    return f"{server.base_url}/api/2.0/sql/{path}"


def poll(server, statement_id: str, timeout: float = 20) -> dict:
    """GET the statement until it is no longer PENDING or RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(api(server, f"statements/{statement_id}"), headers=AUTH).json()
        if body["status"]["state"] not in ("PENDING", "RUNNING") or \
                time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["thrift", "sea", "sea-json"])
def test_named_parameters(big_warehouse, mode):
    with connect(big_warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute("SELECT :s AS s, :i AS i, :f AS f, :b AS b, :n AS n, :d AS d, :t AS t",
                    {"s": "x'y", "i": 3, "f": 0.5, "b": True, "n": None,
                     "d": dt.date(2026, 1, 2), "t": dt.datetime(2026, 6, 1, 12, 30)})
        row = cur.fetchone()
        assert tuple(row)[:5] == ("x'y", 3, 0.5, True, None)
        assert row.d == dt.date(2026, 1, 2) and row.t == dt.datetime(2026, 6, 1, 12, 30)
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE priority = :p AND labor_hours > :h",
                    {"p": "HIGH", "h": 4.5})
        named = cur.fetchone().n
        cur.execute(f"SELECT count(*) AS n FROM {MAINT} WHERE priority = 'HIGH' "
                    "AND labor_hours > 4.5")
        assert named == cur.fetchone().n > 0
        if mode != "thrift":  # the Statement Execution API takes named parameters only
            with pytest.raises(RequestError, match="status 400"):
                cur.execute("SELECT ? AS x", [1])


@pytest.mark.parametrize("mode", list(MODES))
def test_small_and_large_results(big_warehouse, mode):
    """A small result (inline, attached or one link) and a two-chunk one (cloud fetch or
    external links followed chunk by chunk); JSON inline stops at its 25 MiB limit."""
    with connect(big_warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute(LABELLED.format(n=10))
        assert [tuple(r) for r in cur.fetchall()] == [(i, f"row-{i}") for i in range(10)]
        if mode == "sea-json":
            cur.execute(LABELLED.format(n=50_000))
            assert cur.fetchall()[-1].label == "row-49999"
            with pytest.raises(ServerOperationError, match="Inline byte limit exceeded"):
                cur.execute(OVERSIZED)
            return
        cur.execute(LABELLED.format(n=LARGE))
        first = cur.fetchmany(3)
        rest = cur.fetchall_arrow()
    assert [r.label for r in first] == ["row-0", "row-1", "row-2"]
    ids = rest.column("id")
    assert rest.num_rows == LARGE - 3 and pc.count_distinct(ids).as_py() == LARGE - 3
    assert pc.sum(ids).as_py() == LARGE * (LARGE - 1) // 2 - 3
    assert rest.column("label")[-1].as_py() == f"row-{LARGE - 1}"


TYPED = ("SELECT CAST(1.5 AS DECIMAL(10, 2)) AS d, TIMESTAMP'2025-01-02 03:04:05' AS ts, "
         "CAST('2025-01-02 03:04:05' AS TIMESTAMP_NTZ) AS ntz, DATE'2025-01-02' AS dt, "
         "CAST(7 AS BIGINT) AS b, true AS bo, X'AB' AS bin, array(1, 2) AS a")


@pytest.mark.parametrize("mode", list(MODES))
def test_result_types(big_warehouse, mode):
    """DECIMAL, TIMESTAMP, TIMESTAMP_NTZ, DATE, BIGINT, BOOLEAN, BINARY and ARRAY as fetchall
    and fetchall_arrow give them, and the description, alike on every path (JSON gives an
    array as its JSON text, as Databricks does)."""
    with connect(big_warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute(TYPED)
        row = cur.fetchone()
        described = [(d[0], d[1]) for d in cur.description]
        cur.execute(TYPED)
        table = cur.fetchall_arrow()
        decimal_description = cur.description[0][4:6]
    assert described == [("d", "decimal"), ("ts", "timestamp"), ("ntz", "timestamp"),
                         ("dt", "date"), ("b", "bigint"), ("bo", "boolean"),
                         ("bin", "binary"), ("a", "array")]
    assert row.d == decimal.Decimal("1.50") and row.dt == dt.date(2025, 1, 2)
    assert row.ts.replace(tzinfo=None) == row.ntz == dt.datetime(2025, 1, 2, 3, 4, 5)
    assert (row.b, row.bo, row.bin) == (7, True, b"\xab")
    values = table.to_pylist()[0]
    assert values["d"] == decimal.Decimal("1.50") and values["dt"] == dt.date(2025, 1, 2)
    assert values["ts"].utcoffset() == dt.timedelta(0)
    assert values["ntz"] == dt.datetime(2025, 1, 2, 3, 4, 5)
    if mode == "sea-json":  # the connector builds its Arrow table from the converted values
        assert row.a == "[1,2]"
        return
    types = {f.name: f.type for f in table.schema}
    assert types["d"] == pa.decimal128(10, 2) and types["dt"] == pa.date32()
    assert types["ts"] == pa.timestamp("us", tz="Etc/UTC") and types["ntz"] == pa.timestamp("us")
    assert types["b"] == pa.int64() and list(row.a) == [1, 2]
    if mode != "thrift":
        assert decimal_description == (10, 2)


@pytest.mark.parametrize("mode", BACKENDS)
@pytest.mark.parametrize(("sql", "error_class", "sql_state"), [
    (f"SELECT nope FROM {MAINT}", "UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703"),
    ("SELEC 1", "PARSE_SYNTAX_ERROR", "42601"),
])
def test_errors_name_class_and_sqlstate(big_warehouse, mode, sql, error_class, sql_state):
    with connect(big_warehouse, mode) as conn, conn.cursor() as cur:
        with pytest.raises(ServerOperationError) as caught:
            cur.execute(sql)
        assert f"[{error_class}] " in str(caught.value)
        assert f"SQLSTATE: {sql_state}" in str(caught.value)
        cur.execute("SELECT 1 AS still_works")
        assert cur.fetchone()[0] == 1



@pytest.mark.parametrize("mode", BACKENDS)
def test_metadata_calls(big_warehouse, mode):
    """catalogs()/schemas()/tables()/columns(): Get* calls over Thrift, SHOW commands over the
    API (whose column names are the API's: the connector does not rename them)."""
    name, type_name = ("COLUMN_NAME", "TYPE_NAME") if mode == "thrift" else \
        ("col_name", "columnType")
    with connect(big_warehouse, mode) as conn, conn.cursor() as cur:
        cur.catalogs()
        assert [r[0] for r in cur.fetchall()] == ["main"]
        cur.schemas(catalog_name="main")
        assert {r[0] for r in cur.fetchall()} >= {"blade", "default"}
        cur.tables(catalog_name="main", schema_name="blade", table_name="blade_%")
        assert sorted(r[2] for r in cur.fetchall()) == sorted(generator.TABLES.values())
        cur.columns(catalog_name="main", schema_name="blade", table_name="blade_supply_data")
        cols = {getattr(r, name): getattr(r, type_name) for r in cur.fetchall()}
    assert cols["unit_cost"] == "DECIMAL(12,2)" and cols["quantity_on_hand"] == "INT"


def test_api_refuses_bad_requests(big_warehouse):
    statement = {"warehouse_id": "test", "statement": "SELECT 1"}
    assert httpx.post(api(big_warehouse, "statements"), json=statement).status_code == 401
    for bad in ({"wait_timeout": "3s"}, {"disposition": "INLINE", "format": "ARROW_STREAM"},
                {"format": "CSV", "disposition": "EXTERNAL_LINKS"}):
        resp = httpx.post(api(big_warehouse, "statements"), json={**statement, **bad},
                          headers=AUTH)
        assert resp.status_code == 400 and resp.json()["error_code"] == \
            "INVALID_PARAMETER_VALUE"
    resp = httpx.post(api(big_warehouse, "sessions"), json={"warehouse_id": "test",
                                                            "catalog": "nope"}, headers=AUTH)
    assert resp.status_code == 404 and "NO_SUCH_CATALOG_EXCEPTION" in resp.json()["message"]
    assert httpx.get(api(big_warehouse, "statements/unknown"), headers=AUTH).status_code == 404


def test_api_polling_json_chunks_row_limit_and_close(big_warehouse):
    """``wait_timeout=0s`` answers at once; polling shows SUCCEEDED with the manifest and the
    first chunk; ``row_limit`` truncates; DELETE closes; failures carry class and SQLSTATE."""
    session = httpx.post(api(big_warehouse, "sessions"), headers=AUTH, json={
        "warehouse_id": "test", "catalog": "main", "schema": "blade"}).json()["session_id"]
    started = httpx.post(api(big_warehouse, "statements"), headers=AUTH, json={
        "warehouse_id": "test", "session_id": session, "wait_timeout": "0s", "row_limit": 4,
        "statement": "SELECT id, id * 2 AS twice, "
                     "CAST(date_add(DATE'2026-01-01', CAST(id AS INT)) AS DATE) AS day "
                     "FROM range(100)"}).json()
    assert started["status"]["state"] in ("PENDING", "RUNNING", "SUCCEEDED")
    done = poll(big_warehouse, started["statement_id"])
    manifest = done["manifest"]
    assert done["status"]["state"] == "SUCCEEDED" and manifest["format"] == "JSON_ARRAY"
    assert manifest["schema"]["columns"] == [
        {"name": "id", "position": 0, "type_text": "BIGINT", "type_name": "LONG"},
        {"name": "twice", "position": 1, "type_text": "BIGINT", "type_name": "LONG"},
        {"name": "day", "position": 2, "type_text": "DATE", "type_name": "DATE"}]
    assert (manifest["total_row_count"], manifest["truncated"]) == (4, True)
    assert done["result"]["data_array"][3] == ["3", "6", "2026-01-04"]
    counted = httpx.post(api(big_warehouse, "statements"), headers=AUTH, json={
        "warehouse_id": "test", "session_id": session,
        "statement": "SELECT count(*) FROM blade_sortie_data"}).json()  # the session's schema
    assert counted["result"]["data_array"] == [[str(BIG_ROWS)]]
    assert httpx.delete(api(big_warehouse, f"statements/{started['statement_id']}"),
                        headers=AUTH).status_code == 200
    assert poll(big_warehouse, started["statement_id"])["status"] == {"state": "CLOSED"}
    failed = httpx.post(api(big_warehouse, "statements"), headers=AUTH, json={
        "warehouse_id": "test", "statement": "SELECT * FROM main.blade.nope"}).json()
    assert failed["status"]["state"] == "FAILED" and failed["status"]["sql_state"] == "42P01"
    assert failed["status"]["error"]["error_code"] == "BAD_REQUEST"
    assert failed["status"]["error"]["message"].startswith("[TABLE_OR_VIEW_NOT_FOUND] ")
    assert httpx.delete(api(big_warehouse, f"sessions/{session}"), headers=AUTH).is_success


def test_api_external_links_lz4_and_cancel_on_wait_timeout(big_warehouse):
    """EXTERNAL_LINKS + ARROW_STREAM + LZ4_FRAME: chunk after chunk through
    ``next_chunk_internal_link``, each file fetched without the token; then a statement still
    running when ``wait_timeout`` passes with ``on_wait_timeout=CANCEL`` comes back CANCELED."""
    answer = httpx.post(api(big_warehouse, "statements"), headers=AUTH, timeout=60, json={
        "warehouse_id": "test", "statement": LABELLED.format(n=LARGE), "wait_timeout": "30s",
        "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM",
        "result_compression": "LZ4_FRAME"}).json()
    manifest, result = answer["manifest"], answer["result"]
    assert manifest["total_chunk_count"] == len(manifest["chunks"]) >= 2
    assert manifest["result_compression"] == "LZ4_FRAME"
    tables = []
    while True:
        [link] = result["external_links"]
        data = httpx.get(link["external_link"]).content  # presigned: no Authorization
        tables.append(pa.ipc.open_stream(lz4.frame.decompress(data)).read_all())
        assert tables[-1].num_rows == link["row_count"]
        if "next_chunk_internal_link" not in link:
            break
        result = httpx.get(big_warehouse.base_url + link["next_chunk_internal_link"],
                           headers=AUTH).json()
    assert len(tables) == manifest["total_chunk_count"]
    assert sum(t.num_rows for t in tables) == manifest["total_row_count"] == LARGE
    started = time.monotonic()
    canceled = httpx.post(api(big_warehouse, "statements"), headers=AUTH, timeout=30, json={
        "warehouse_id": "test", "statement": ENDLESS, "wait_timeout": "5s",
        "on_wait_timeout": "CANCEL"}).json()
    assert canceled["status"]["state"] == "CANCELED"
    assert 5 <= time.monotonic() - started < 9
