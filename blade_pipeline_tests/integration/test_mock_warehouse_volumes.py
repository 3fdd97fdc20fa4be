"""Volume staging operations (``PUT``/``GET``/``REMOVE``) and ``TABLESAMPLE`` on the mock
warehouse, through the unmodified databricks-sql-connector over both backends (Thrift and
``use_sea=True``), over loopback."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from databricks.sql.exc import OperationalError, ProgrammingError, ServerOperationError

from blade_pipeline.devservices.warehouse.volumes import STAGING_USER
from blade_pipeline_tests.conftest import WAREHOUSE_TOKEN
from blade_pipeline_tests.warehouse_client import BACKENDS, connect

AUTH = {"Authorization": f"Bearer {WAREHOUSE_TOKEN}"}
VOLUME = "/Volumes/main/blade/landing"
MAINT = "main.blade.blade_maintenance_data"
ROWS = 2_000
MISSING = "Staging operation over HTTP was unsuccessful: 404"


@pytest.fixture(scope="module")
def warehouse(start_warehouse):
    return start_warehouse(ROWS)


def _file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (path := folder / name).write_bytes(data)
    return path


@pytest.mark.parametrize("mode", BACKENDS)
def test_put_get_remove_life_cycle(warehouse, tmp_path, mode):
    """The file lands, comes back equal, is refused a second PUT without OVERWRITE (with
    Databricks' class), is replaced with it, goes; GET and REMOVE of the missing file then fail
    at the link, with 404, as on a warehouse."""
    local = _file(tmp_path, "drop.csv", b"record_id,priority\n000000001,HIGH\n" * 500)
    newer = _file(tmp_path, "newer.csv", b"record_id\n2\n")
    back = tmp_path / "back.csv"
    target = f"{VOLUME}/{mode}/2026/drop.csv"
    with connect(warehouse, mode, staging_allowed_local_path=str(tmp_path)) as conn, \
            conn.cursor() as cur:
        cur.execute(f"PUT '{local}' INTO '{target}'")
        with pytest.raises(ServerOperationError,
                           match=r"\[FILE_IN_STAGING_PATH_ALREADY_EXISTS\].*SQLSTATE: 42K04"):
            cur.execute(f"PUT '{newer}' INTO '{target}'")
        cur.execute(f"GET '{target}' TO '{back}'")
        assert back.read_bytes() == local.read_bytes()
        cur.execute(f"PUT '{newer}' INTO 'dbfs:{target}' OVERWRITE")  # the same file
        cur.execute(f"GET '{target}' TO '{back}'")
        assert back.read_bytes() == b"record_id\n2\n"
        cur.execute(f"REMOVE '{target}'")
        with pytest.raises(OperationalError, match=MISSING):
            cur.execute(f"GET '{target}' TO '{back}'")
        with pytest.raises(OperationalError, match=MISSING):
            cur.execute(f"REMOVE '{target}'")
        cur.execute(f"PUT '{local}' INTO '{target}'")  # gone: a PUT without OVERWRITE lands


@pytest.mark.parametrize("mode", BACKENDS)
def test_staging_allowed_local_path_is_enforced_by_the_connector(warehouse, tmp_path, mode):
    """The answer's ``localFile`` is the statement's local path, so the connector allows it
    inside any of several allowed folders and refuses it outside them (also through ``..``)
    or when none is given (a REMOVE needs none)."""
    first, second, outside = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    files = [_file(folder, "x.csv", folder.name.encode()) for folder in (first, second, outside)]
    target = f"{VOLUME}/{mode}/allowed"
    with connect(warehouse, mode, staging_allowed_local_path=[str(first), str(second)]) as conn, \
            conn.cursor() as cur:
        cur.execute(f"PUT '{files[0]}' INTO '{target}/a.csv' OVERWRITE")
        cur.execute(f"PUT '{files[1]}' INTO '{target}/b.csv' OVERWRITE")
        cur.execute(f"GET '{target}/a.csv' TO '{second / 'got.csv'}'")
        assert (second / "got.csv").read_bytes() == b"a"
        for escape in (files[2], first / ".." / "c" / "x.csv"):
            with pytest.raises(ProgrammingError, match="restricted to paths within the "
                               "configured staging_allowed_local_path"):
                cur.execute(f"PUT '{escape}' INTO '{target}/c.csv' OVERWRITE")
        with pytest.raises(ProgrammingError, match="restricted to paths within"):
            cur.execute(f"GET '{target}/a.csv' TO '{outside / 'got.csv'}'")
        assert not (outside / "got.csv").exists()
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        for sql in (f"PUT '{files[0]}' INTO '{target}/a.csv' OVERWRITE",
                    f"GET '{target}/a.csv' TO '{first / 'again.csv'}'"):
            with pytest.raises(ProgrammingError, match="You must provide at least one "
                               "staging_allowed_local_path"):
                cur.execute(sql)
        cur.execute(f"REMOVE '{target}/b.csv'")
        with pytest.raises(OperationalError, match=MISSING):
            cur.execute(f"REMOVE '{target}/b.csv'")


@pytest.mark.parametrize("mode", BACKENDS)
def test_paths_outside_volumes_and_other_users_staging_areas_are_refused(
        warehouse, tmp_path, mode):
    local = _file(tmp_path, "x.csv", b"x")
    own = f"stage://tmp/{STAGING_USER}/{mode}/x.csv"
    with connect(warehouse, mode, staging_allowed_local_path=str(tmp_path)) as conn, \
            conn.cursor() as cur:
        for path in ("/tmp/x.csv", "dbfs:/tmp/x.csv", "s3://bucket/x.csv",
                     "stageRANDOM://tmp/x.csv", f"{VOLUME}/../../../etc/x.csv",
                     f"{VOLUME}/a/./b.csv", f"{VOLUME}//x.csv", "/Volumes/main/blade/landing",
                     "Volumes/main/blade/landing/x.csv"):
            with pytest.raises(ServerOperationError, match=r"\[INVALID_STAGING_PATH_IN_STAGING_"
                               r"ACCESS_QUERY\].*SQLSTATE: 42601"):
                cur.execute(f"PUT '{local}' INTO '{path}' OVERWRITE")
        other = "stage://tmp/mary.poppins@databricks.com/x.csv"
        for sql in (f"PUT '{local}' INTO '{other}' OVERWRITE", f"GET '{other}' TO '{local}'",
                    f"REMOVE '{other}'"):
            with pytest.raises(ServerOperationError, match=r"\[PERMISSION_DENIED\]"):
                cur.execute(sql)
        cur.execute(f"PUT '{local}' INTO '{own}' OVERWRITE")  # the user's own area
        cur.execute(f"GET '{own}' TO '{tmp_path / 'own.csv'}'")
        assert (tmp_path / "own.csv").read_bytes() == b"x"
        with pytest.raises(ServerOperationError, match="NOT_FOUND: Catalog 'nope'"):
            cur.execute(f"PUT '{local}' INTO '/Volumes/nope/s/v/x.csv'")
        with pytest.raises(ServerOperationError, match="EMPTY_LOCAL_FILE_IN_STAGING_ACCESS"):
            cur.execute(f"PUT '' INTO '{VOLUME}/x.csv'")


@pytest.mark.parametrize("mode", BACKENDS)
def test_streaming_put_from_input_stream(warehouse, tmp_path, mode):
    """``PUT '__input_stream__'`` uploads the bytes of ``input_stream`` (no allowed local path
    needed); without a stream the connector refuses it before any upload."""
    target = f"{VOLUME}/{mode}/streamed.bin"
    payload = bytes(range(256)) * 64
    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        cur.execute(f"PUT '__input_stream__' INTO '{target}' OVERWRITE",
                    input_stream=io.BytesIO(payload))
        with pytest.raises(ServerOperationError, match="FILE_IN_STAGING_PATH_ALREADY_EXISTS"):
            cur.execute(f"PUT '__input_stream__' INTO '{target}'", input_stream=io.BytesIO(b"x"))
        with pytest.raises(ProgrammingError, match="No input stream provided"):
            cur.execute(f"PUT '__input_stream__' INTO '{VOLUME}/{mode}/none.bin'")
    with connect(warehouse, mode, staging_allowed_local_path=str(tmp_path)) as conn, \
            conn.cursor() as cur:
        cur.execute(f"GET '{target}' TO '{tmp_path / 'back.bin'}'")
        with pytest.raises(OperationalError, match=MISSING):
            cur.execute(f"GET '{VOLUME}/{mode}/none.bin' TO '{tmp_path / 'none.bin'}'")
    assert (tmp_path / "back.bin").read_bytes() == payload


def test_the_staging_answer_has_databricks_columns_and_single_use_links(warehouse):
    """Over the Statement Execution API: a volume operation, with the columns operation,
    presignedUrl, headers (JSON) and localFile in that order (REMOVE: no localFile); the link
    needs no token, serves one request of its own method only."""
    def run(statement: str) -> dict:
        answer = httpx.post(f"{warehouse.base_url}/api/2.0/sql/statements", headers=AUTH, json={
            "warehouse_id": "test", "statement": statement}).json()
        assert answer["status"]["state"] == "SUCCEEDED", answer
        assert answer["manifest"]["is_volume_operation"] is True
        columns = [c["name"] for c in answer["manifest"]["schema"]["columns"]]
        return dict(zip(columns, answer["result"]["data_array"][0], strict=True))

    put = run(f"PUT '/home/me/it''s.csv' INTO '{VOLUME}/raw/it.csv' OVERWRITE")
    assert list(put) == ["operation", "presignedUrl", "headers", "localFile"]
    assert put["operation"] == "PUT" and put["localFile"] == "/home/me/it's.csv"
    assert put["headers"] == "{}"
    link = put["presignedUrl"]
    assert httpx.get(link).status_code == 403  # bound to its operation
    assert httpx.put(link, content=iter([b"a,", b"b\n"])).status_code == 201  # chunked
    assert httpx.put(link, content=b"again").status_code == 403  # single use
    get = run(f"GET '{VOLUME}/raw/it.csv' TO 'relative/it.csv'")
    assert get["localFile"] == "relative/it.csv"
    assert httpx.get(get["presignedUrl"]).content == b"a,b\n"
    assert list(run(f"REMOVE '{VOLUME}/raw/it.csv'")) == ["operation", "presignedUrl", "headers"]
    assert httpx.put(f"{warehouse.base_url}/volumes/not-a-token", content=b"x").status_code == 403


@pytest.mark.parametrize("mode", BACKENDS)
def test_tablesample_as_databricks_samples(warehouse, mode):
    """DuckDB's USING SAMPLE is refused; TABLESAMPLE's ROWS keep at most n rows, PERCENT and
    BUCKET about that fraction, REPEATABLE the same rows for the same seed, and the sample is
    taken before WHERE."""
    def ids(clause: str, where: str = "") -> list[str]:
        cur.execute(f"SELECT record_id FROM {MAINT} TABLESAMPLE {clause} {where}")
        return sorted(str(r[0]) for r in cur.fetchall())  # record_id may be NULL

    with connect(warehouse, mode) as conn, conn.cursor() as cur:
        for duckdb_only in (f"SELECT * FROM {MAINT} USING SAMPLE 5",
                            f"SELECT * FROM {MAINT} TABLESAMPLE (5)",
                            f"SELECT * FROM {MAINT} TABLESAMPLE SYSTEM (10 PERCENT)"):
            with pytest.raises(ServerOperationError,
                               match=r"\[PARSE_SYNTAX_ERROR\].*SQLSTATE: 42601"):
                cur.execute(duckdb_only)
        assert len(ids("(5 ROWS)")) == 5
        assert len(ids(f"({ROWS * 10} ROWS)")) == ROWS
        assert ids("(7 ROWS) REPEATABLE (3)") == ids("(7 ROWS) REPEATABLE (3)")
        tenth = ids("(10 PERCENT) REPEATABLE (42)")
        assert ROWS * 0.05 < len(tenth) < ROWS * 0.15
        assert tenth == ids("(10 PERCENT) REPEATABLE (42)") != ids("(10 PERCENT) REPEATABLE (43)")
        assert ROWS * 0.15 < len(ids("(BUCKET 1 OUT OF 4)")) < ROWS * 0.35
        cur.execute(f"SELECT count(*) FROM {MAINT} TABLESAMPLE (50 ROWS) AS m "
                    "WHERE m.record_id IS NOT NULL")
        assert cur.fetchone()[0] <= 50
