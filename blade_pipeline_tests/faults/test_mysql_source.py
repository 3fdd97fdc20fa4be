"""Case 14: a ``kind: mysql`` source (MariaDB on 127.0.0.1:3306) through the same factory
the generator's rows — the mock warehouse's, invalid ones included — read by
connectorx must reach the catalog exact, with the Databricks kind's items and hashes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from blade_pipeline.config.sources import DatabaseTable, source_for
from blade_pipeline.defs.sensors import evaluate_changes
from blade_pipeline.devservices.relational_seed import seed_mysql
from blade_pipeline.sources.mysql import MySQLDatabase
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, END_DATE
from blade_pipeline_tests.faults.conftest import (
    DAY,
    DAYS,
    INVALID,
    RANGE,
    ROWS,
    assert_exact,
    assert_remarks_column_evolved,
    checks,
    failure_messages,
    make_resources,
    retried_because,
    run,
    staged_hashes,
)
from blade_pipeline_tests.mysql import (
    MYSQL_SERVER,
    fresh_mysql_database,
    mariadb_answers,
    private_mariadb,
)
from blade_pipeline_tests.servers import ServerProcess

SERVER = MYSQL_SERVER


@pytest.fixture(scope="module")
def mysql_schema() -> Iterator[str]:
    """A fresh MySQL database seeded like the suite's mock warehouse (``reference_db``)."""
    if not mariadb_answers():
        pytest.skip("MariaDB does not answer on 127.0.0.1:3306 (root, empty password)")
    with fresh_mysql_database("blade_source") as name:
        seed_mysql(f"{SERVER}/", ROWS, 7, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                   schema=name, data_types=["supply"])
        yield name


def mysql_source(schema: str):
    return source_for("supply").model_copy(update={
        "kind": "mysql", "warehouse": None,
        "database": DatabaseTable(schema=schema, table="blade_supply_data")})


def mysql_resources(schema: str, catalog, lake_dir, server: str = SERVER) -> dict:
    return {"mysql": MySQLDatabase(url=f"{server}/{schema}"),
            "catalog": CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN,
                                     backoff_base_s=0.05, backoff_max_s=0.5),
            "lake": ParquetLake(uri=str(lake_dir))}


def test_14a_a_mysql_day_and_a_range_reach_the_catalog_exactly_with_databricks_hashes(
        mysql_schema, fault_warehouse, start_catalog, lake_dir, tmp_path, dagster_instance,
        reference_db, recorded):
    source = mysql_source(mysql_schema)
    res = mysql_resources(mysql_schema, start_catalog(), lake_dir)
    result = run(source, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    assert all(c.passed for c in checks(result).values())
    assert_exact(res, reference_db, "supply")
    # DECIMAL arrives as decimal(38,10) and is cast back to the model's decimal(12,2): the
    # same items, the same hashes as the same rows read from the mock Databricks warehouse
    databricks = make_resources(fault_warehouse, start_catalog(), tmp_path / "databricks")
    assert run(source_for("supply"), databricks, dagster_instance, recorded).success
    assert staged_hashes(res["lake"], "supply") == staged_hashes(databricks["lake"], "supply")
    ranged = run(source, res, dagster_instance, recorded, days=RANGE)
    assert ranged.success, failure_messages(ranged)
    assert_exact(res, reference_db, "supply", days=RANGE)


def test_14b_the_change_sensor_reads_mysql(mysql_schema):
    import pymysql

    source = mysql_source(mysql_schema)
    database = MySQLDatabase(url=f"{SERVER}/{mysql_schema}")
    first = evaluate_changes(source, database, None, dg.DailyPartitionsDefinition(
        start_date="2024-01-01", end_offset=1))
    cursor = first.cursor
    db = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                         database=mysql_schema)
    with db.cursor() as sql:
        sql.execute("UPDATE blade_supply_data SET last_modified = %s WHERE part_number IN "
                    "(SELECT part_number FROM (SELECT part_number FROM blade_supply_data "
                    "WHERE DATE(last_modified) = %s AND part_number IS NOT NULL "
                    "ORDER BY part_number LIMIT 25) AS p)",
                    (dt.datetime.fromisoformat(cursor) + dt.timedelta(microseconds=1), DAY))
    db.commit()
    db.close()
    tick = evaluate_changes(source, database, cursor, dg.DailyPartitionsDefinition(
        start_date="2024-01-01", end_offset=1))
    [request] = tick.run_requests
    assert request.partition_key == DAY and request.tags["blade/changed_rows"] == "25"


def test_14c_bad_credentials_fail_at_once_naming_the_server_not_the_password(
        mysql_schema, start_catalog, lake_dir, dagster_instance, recorded):
    """One PyMySQL login before connectorx (whose pool would keep trying ~30 s)."""
    source = mysql_source(mysql_schema)
    res = mysql_resources(mysql_schema, start_catalog(), lake_dir)
    res["mysql"] = MySQLDatabase(url=f"mysql://intruder:hunter2-secret@127.0.0.1:3306/"
                                     f"{mysql_schema}")
    started = time.monotonic()
    result = run(source, res, dagster_instance, recorded)
    assert not result.success and time.monotonic() - started < 20
    message = " ".join(failure_messages(result))
    assert f"MySQL mysql://127.0.0.1:3306/{mysql_schema} refused the connection" in message
    assert "hunter2-secret" not in message
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1  # refused credentials are not retried


def _mariadb():
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           autocommit=True)


def test_14d_a_column_added_in_mysql_is_met_by_the_schema_policy(
        mysql_schema, start_catalog, lake_dir, dagster_instance, recorded):
    source = mysql_source(mysql_schema)
    res = mysql_resources(mysql_schema, start_catalog(), lake_dir)
    assert run(source, res, dagster_instance, recorded).success
    db = _mariadb()
    table = f"`{mysql_schema}`.`blade_supply_data`"
    db.cursor().execute(f"ALTER TABLE {table} ADD COLUMN remarks TEXT")
    try:
        assert_remarks_column_evolved(run(source, res, dagster_instance, recorded))
    finally:
        db.cursor().execute(f"ALTER TABLE {table} DROP COLUMN remarks")
        db.close()


#: the lock holder and killer of cases 14e and 14f, in a process of its own: connectorx holds
#: the GIL while its query waits, so no thread of the run's process could do this. Arguments:
#: schema, port, and (14f) the server's pid: the server is killed instead of the query.
KILLER = """
import os, signal, sys, time, pymysql
schema, port = sys.argv[1], int(sys.argv[2])
server_pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
def connect():
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                           autocommit=True)
admin, locker = connect(), connect()
locker.cursor().execute(f"LOCK TABLES `{schema}`.`blade_supply_data` WRITE")
print("locked", flush=True)
def waiting():
    cursor = admin.cursor()
    cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND "
                   "state LIKE 'Waiting for table%%'", (schema,))
    return [pid for (pid,) in cursor.fetchall()]
def wait_for(predicate, what):
    deadline = time.monotonic() + 60
    while not (found := predicate()):
        if time.monotonic() > deadline:
            print("timeout:", what, flush=True)
            return []
        time.sleep(0.1)
    return found
if server_pid is not None:
    if wait_for(waiting, "the run's query never waited on the lock"):
        os.kill(server_pid, signal.SIGKILL)
        print("server killed", flush=True)
    sys.exit()
try:
    killed = wait_for(waiting, "the run's query never waited on the lock")
    for pid in killed:
        admin.cursor().execute(f"KILL {int(pid)}")
    print("killed", len(killed), flush=True)
    again = wait_for(lambda: [p for p in waiting() if p not in killed], "no retry")
    print("retried", len(again), flush=True)
finally:
    locker.cursor().execute("UNLOCK TABLES")
"""


def test_14e_mysql_killing_the_extract_is_retried_by_the_step_and_ends_exact(
        mysql_schema, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    """The run's query waits on a table lock; its connection is killed (KILL, as a failover
    or an operator does); the step's RetryPolicy runs it again once the table is free."""
    source = mysql_source(mysql_schema)
    res = mysql_resources(mysql_schema, start_catalog(), lake_dir)
    killer = subprocess.Popen([sys.executable, "-c", KILLER, mysql_schema, "3306"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert killer.stdout.readline().strip() == "locked"
        result = run(source, res, dagster_instance, recorded)
        said = killer.communicate(timeout=120)[0]
    finally:
        killer.kill()
    assert "killed" in said and "retried" in said and "timeout" not in said, said
    assert result.success, failure_messages(result)
    assert f"MySQL mysql://127.0.0.1:3306/{mysql_schema}" in retried_because(result)
    assert_exact(res, reference_db, "supply")


@pytest.mark.slow
@pytest.mark.extended
def test_14f_mariadb_killed_mid_extract_fails_clearly_then_reexecution_after_restart_is_exact(
        tmp_path, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    """A server of its own is killed -9 while a range run's query runs, and stays down: the
    step's retries fail fast naming the server (not ~30 s each in connectorx's pool); no day
    is staged in part. Restarted (InnoDB recovers), the same run ends exact."""
    with private_mariadb(tmp_path / "mariadb") as server:
        url, schema = f"mysql://root:@127.0.0.1:{server.port}", "blade_units"
        seed_mysql(f"{url}/", ROWS, 7, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                   schema=schema, data_types=["supply"])
        source = mysql_source(schema)
        res = mysql_resources(schema, start_catalog(), lake_dir, server=url)
        killer = subprocess.Popen([sys.executable, "-c", KILLER, schema, str(server.port),
                                   str(server.popen.pid)], stdout=subprocess.PIPE, text=True)
        try:
            assert killer.stdout.readline().strip() == "locked"
            started = time.monotonic()
            result = run(source, res, dagster_instance, recorded, days=RANGE)
            failed_in = time.monotonic() - started
            said = killer.communicate(timeout=60)[0]
        finally:
            killer.kill()
        assert "server killed" in said, said
        assert not result.success
        message = " ".join(failure_messages(result))
        assert f"MySQL mysql://127.0.0.1:{server.port}/{schema} cannot be reached" in message
        assert failed_in < 60, f"the retries took {failed_in:.0f}s"
        lake = res["lake"]
        assert not list(lake_dir.rglob("*.parquet")), "a day was staged from a dead server"
        assert not list(lake_dir.rglob(".tmp-*")), "temp files left behind"

        restarted = ServerProcess(server.args, server.port, server.log_path)
        restarted.start(None, timeout=120)
        try:
            again = run(source, res, dagster_instance, recorded, days=RANGE)
            assert again.success, failure_messages(again)
            assert_exact(res, reference_db, "supply", days=RANGE)
            assert lake.exists(lake.partition_dir("supply", RANGE[0]) + "/part-0.parquet")
        finally:
            restarted.stop(timeout=30)
