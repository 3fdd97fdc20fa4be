"""Case 13: a ``kind: postgres`` source through the same factory.

The machine's PostgreSQL (127.0.0.1:5432) holds the generator's rows — the very rows the mock
warehouse of this suite holds, invalid ones included — and the same assets, checks, sensor and
catalog read them through ADBC: the catalog must end exact, with the same items and hashes as
from Databricks.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from blade_pipeline.config.sources import DatabaseTable, source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.defs.sensors import evaluate_changes
from blade_pipeline.devservices.relational_seed import seed_postgres
from blade_pipeline.sources.postgres import PostgresDatabase
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
    materialization,
    materialized,
    retried_because,
    run,
    staged_hashes,
)
from blade_pipeline_tests.postgres import (
    fresh_pg_database,
    pg_answers,
    private_postgres,
    restart_private_postgres,
)

SUPPLY = source_for("supply")
PG_SUPPLY = SUPPLY.model_copy(update={
    "kind": "postgres", "warehouse": None,
    "database": DatabaseTable(schema="blade", table="blade_supply_data")})


@pytest.fixture(scope="module")
def pg_source_url() -> Iterator[str]:
    """A fresh database seeded like the suite's mock warehouse (``reference_db``)."""
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    with fresh_pg_database("blade_source") as url:
        url = url.replace("postgresql+psycopg2://", "postgresql://")
        seed_postgres(url, ROWS, 7, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                      data_types=["supply"])
        yield url


def pg_resources(url: str, catalog, lake_dir) -> dict:
    return {"postgres": PostgresDatabase(url=url),
            "catalog": CatalogClient(base_url=catalog.base_url, token=CATALOG_TOKEN,
                                     backoff_base_s=0.05, backoff_max_s=0.5),
            "lake": ParquetLake(uri=str(lake_dir))}


def test_13a_a_postgres_day_reaches_the_catalog_exactly_with_databricks_hashes(
        pg_source_url, fault_warehouse, start_catalog, lake_dir, tmp_path, dagster_instance,
        reference_db, recorded):
    res = pg_resources(pg_source_url, start_catalog(), lake_dir)
    result = run(PG_SUPPLY, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    assert all(c.passed for c in checks(result).values())
    staged = materialization(result, staged_key(PG_SUPPLY))
    assert staged["rows_quarantined"] > 0  # the seeded invalid rows, quarantined with reasons
    assert_exact(res, reference_db, "supply")  # every valid row once, every invalid one kept
    # the same rows read from the mock Databricks warehouse: the same items, the same hashes
    databricks = make_resources(fault_warehouse, start_catalog(), tmp_path / "databricks")
    assert run(SUPPLY, databricks, dagster_instance, recorded).success
    assert staged_hashes(res["lake"], "supply") == staged_hashes(databricks["lake"], "supply")
    [item] = res["catalog"].list_items(PG_SUPPLY.catalog_data_source, limit=1)["items"]
    assert item["item"]["metadata"]["source"] == "postgres"
    assert item["item"]["metadata"]["table"] == "blade_supply_data"


def test_13b_a_range_run_and_the_change_sensor_read_postgres(
        pg_source_url, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    res = pg_resources(pg_source_url, start_catalog(), lake_dir)
    result = run(PG_SUPPLY, res, dagster_instance, recorded, days=RANGE)
    assert result.success, failure_messages(result)
    assert_exact(res, reference_db, "supply", days=RANGE)
    # 25 rows of DAY change in PostgreSQL: the sensor asks PostgreSQL and requests that day
    database: PostgresDatabase = res["postgres"]
    newest = database.query_arrow("SELECT max(`last_modified`) AS m FROM `blade`."
                                  "`blade_supply_data`").column(0)[0].as_py()
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(pg_source_url) as pg, pg.cursor() as cursor:
        cursor.execute(
            "UPDATE blade.blade_supply_data SET last_modified = $1, location = 'moved' "
            "WHERE part_number IN (SELECT part_number FROM blade.blade_supply_data "
            "WHERE last_modified::date = $2 ORDER BY part_number LIMIT 25)",
            parameters=(newest + dt.timedelta(microseconds=1), dt.date.fromisoformat(DAY)))
        pg.commit()
    partitions = dg.DailyPartitionsDefinition(start_date=PG_SUPPLY.partition_start.isoformat(),
                                              end_offset=1)
    cursor = newest.isoformat(timespec="microseconds")
    tick = evaluate_changes(PG_SUPPLY, database, cursor, partitions)
    [request] = tick.run_requests
    assert request.partition_key == DAY and request.tags["blade/changed_rows"] == "25"
    assert tick.cursor > cursor


def test_13c_bad_credentials_fail_at_once_naming_the_database_not_the_password(
        pg_source_url, start_catalog, lake_dir, dagster_instance, recorded):
    wrong = pg_source_url.replace("postgres@", "intruder:hunter2-secret@")
    res = pg_resources(wrong, start_catalog(), lake_dir)
    result = run(PG_SUPPLY, res, dagster_instance, recorded)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "PostgreSQL postgresql://127.0.0.1:5432/" in message
    assert "refused the connection" in message and "hunter2-secret" not in message
    assert not materialized(result, staged_key(PG_SUPPLY))
    assert not materialized(result, catalog_key(PG_SUPPLY))
    staged_steps = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(staged_steps) == 1  # refused credentials are not retried


def test_13d_a_column_added_in_postgres_is_met_by_the_schema_policy(
        pg_source_url, start_catalog, lake_dir, dagster_instance, recorded):
    res = pg_resources(pg_source_url, start_catalog(), lake_dir)
    assert run(PG_SUPPLY, res, dagster_instance, recorded).success
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(pg_source_url) as pg, pg.cursor() as cursor:
        cursor.execute("ALTER TABLE blade.blade_supply_data ADD COLUMN remarks text")
        pg.commit()
    try:
        assert_remarks_column_evolved(run(PG_SUPPLY, res, dagster_instance, recorded))
    finally:
        with adbc_pg.connect(pg_source_url) as pg, pg.cursor() as cursor:
            cursor.execute("ALTER TABLE blade.blade_supply_data DROP COLUMN remarks")
            pg.commit()


def lock_waiters(admin, database: str) -> list[int]:
    """Backends of ``database`` whose query on the supply table waits on a lock."""
    cursor = admin.cursor()
    cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                   "wait_event_type = 'Lock' AND query LIKE '%%blade_supply_data%%'",
                   (database,))
    return [pid for (pid,) in cursor.fetchall()]


def wait_for(predicate, what: str, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def test_13e_postgres_dropping_the_extract_is_retried_by_the_step_and_ends_exact(
        pg_source_url, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    """The run's query waits on a lock; its backend is terminated (what a failover or an
    operator's pg_terminate_backend does); the step's RetryPolicy runs it again once the
    table is free: exact, one schema version."""
    import psycopg2

    res = pg_resources(pg_source_url, start_catalog(), lake_dir)
    name = pg_source_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name)
    admin.autocommit = True  # pg_stat_activity is read once per transaction otherwise
    locker = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name)
    locker.cursor().execute("LOCK TABLE blade.blade_supply_data IN ACCESS EXCLUSIVE MODE")
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(
        run(PG_SUPPLY, res, dagster_instance, recorded)))
    runner.start()

    def waiting() -> list[int]:
        return lock_waiters(admin, name)

    try:
        killed = wait_for(waiting, "the run's query never waited on the lock")
        admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid",
                               (killed,))
        wait_for(lambda: [p for p in waiting() if p not in killed],
                 "the step was not retried")
    finally:
        locker.rollback()  # the table is free: the retry goes through
        runner.join(timeout=120)
        locker.close()
        admin.close()
    [result] = outcome
    assert result.success, failure_messages(result)
    why = retried_because(result)
    assert "[supply] PostgreSQL postgresql://127.0.0.1:5432/" in why
    assert "dropped the connection" in why and "(the step retries)" in why
    assert_exact(res, reference_db, "supply")
    assert [p.name for p in (lake_dir / "supply" / "_schema").glob("v*")] == ["v0001.json"]


def test_13f_the_cli_checks_the_postgres_connection_without_showing_the_password(
        pg_source_url, monkeypatch, capsys):
    from blade_pipeline.cli import main

    monkeypatch.setenv("BLADE_POSTGRES_URL", pg_source_url)
    assert main(["test-connection", "--kind", "postgres"]) == 0
    assert "OK: postgresql://127.0.0.1:5432/" in capsys.readouterr().out
    monkeypatch.setenv("BLADE_POSTGRES_URL",
                       pg_source_url.replace("postgres@", "intruder:hunter2-secret@"))
    assert main(["test-connection", "--kind", "postgres"]) == 1
    err = capsys.readouterr().err
    assert "refused the connection" in err and "hunter2-secret" not in err


@pytest.mark.slow
@pytest.mark.extended
def test_13g_postgres_killed_mid_extract_fails_clearly_then_reexecution_after_restart_is_exact(
        start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    """A server of its own is killed -9 (postmaster and the run's backend) while a range
    run's query runs, and stays down: the step's retries fail naming the server; no day is
    staged in part. Restarted (crash recovery), the same run ends exact."""
    import signal

    import psycopg2

    with private_postgres() as server:
        url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        seed_postgres(url, ROWS, 7, end=END_DATE, days=DAYS, invalid_fraction=INVALID,
                      data_types=["supply"])
        res = pg_resources(url, start_catalog(), lake_dir)
        admin = psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres",
                                 dbname="postgres")
        admin.autocommit = True
        locker = psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres",
                                  dbname="postgres")
        locker.cursor().execute("LOCK TABLE blade.blade_supply_data IN ACCESS EXCLUSIVE MODE")
        outcome: list = []
        runner = threading.Thread(target=lambda: outcome.append(
            run(PG_SUPPLY, res, dagster_instance, recorded, days=RANGE)))
        runner.start()
        try:
            backends = wait_for(lambda: lock_waiters(admin, "postgres"),
                                "the run's query never waited on the lock")
            server.kill()  # the postmaster (reaped: a zombie's pid would look alive)
            for pid in backends:
                os.kill(pid, signal.SIGKILL)
        finally:
            runner.join(timeout=180)
        [result] = outcome
        assert not result.success
        message = " ".join(failure_messages(result))
        assert f"[supply] PostgreSQL postgresql://127.0.0.1:{server.port}/postgres cannot be " \
               "reached" in message
        assert not list(lake_dir.rglob("*.parquet")), "a day was staged from a dead server"
        assert not list(lake_dir.rglob(".tmp-*")), "temp files left behind"

        restarted = restart_private_postgres(server)
        try:
            again = run(PG_SUPPLY, res, dagster_instance, recorded, days=RANGE)
            assert again.success, failure_messages(again)
            assert_exact(res, reference_db, "supply", days=RANGE)
        finally:
            restarted.stop(timeout=30)
