"""The mock warehouse's deterministic data generator (devservices/warehouse/generator.py)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import duckdb
import pytest

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.generator import INVALID_FIELDS, INVALID_KINDS, TABLES
from blade_pipeline.devservices.warehouse.tables import COLUMNS, PRIMARY_KEYS

END = dt.date(2025, 6, 30)
DAYS = 730
ROWS = 20_000
FRACTION = 0.02
AIRCRAFT = ("F-16C", "F-15E", "C-17A", "KC-135R", "A-10C", "B-52H", "C-130J", "HH-60W")
KEY_PATTERN = {
    "maintenance": r"\d{9}", "sortie": r"\d{9}", "readiness": r"\d{9}",
    "supply": r"\d{4}-\d{2}-\d{3}-\d{4}",
}
TAIL = r"regexp_full_match(tail_number, '\d{2}-\d{4}')"

# A row breaks its table's rules (other than key uniqueness): written independently of the
# generator, from DESIGN §3 and the brief.
VIOLATION = {
    "maintenance": f"""record_id IS NULL OR NOT regexp_full_match(record_id, '\\d{{9}}')
        OR tail_number IS NULL OR NOT {TAIL}
        OR maint_type NOT IN ('SCHEDULED', 'UNSCHEDULED', 'INSPECTION', 'MODIFICATION', 'TCTO')
        OR priority NOT IN ('HIGH', 'MEDIUM', 'LOW')
        OR status NOT IN ('OPEN', 'IN_PROGRESS', 'DEFERRED', 'COMPLETED', 'CANCELLED')
        OR labor_hours < 0 OR due_date < DATE '2000-01-01'""",
    "sortie": f"""sortie_id IS NULL OR NOT regexp_full_match(sortie_id, '\\d{{9}}')
        OR tail_number IS NULL OR NOT {TAIL}
        OR mission_type NOT IN ('TRAINING', 'COMBAT', 'TRANSPORT', 'REFUEL', 'ISR', 'TEST')
        OR status NOT IN ('SCHEDULED', 'COMPLETED', 'CANCELLED', 'ABORTED')
        OR flight_hours < 0 OR landing_time <= takeoff_time""",
    "supply": """part_number IS NULL
        OR NOT regexp_full_match(part_number, '\\d{4}-\\d{2}-\\d{3}-\\d{4}')
        OR nomenclature IS NULL OR quantity_on_hand < 0 OR reorder_point < 0
        OR unit_cost <= 0 OR condition_code NOT IN ('A', 'B', 'C', 'D', 'E', 'F', 'G', 'H')""",
    "readiness": f"""report_id IS NULL OR NOT regexp_full_match(report_id, '\\d{{9}}')
        OR tail_number IS NULL OR NOT {TAIL}
        OR status NOT IN ('FMC', 'PMC', 'NMC')
        OR report_date > CAST(last_modified AS DATE)""",
}


def content_hash(con: duckdb.DuckDBPyConnection, data_type: str) -> tuple[int, str]:
    """Row count and an order-independent digest of a table's contents."""
    return con.sql(
        f"SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) "
        f"ORDER BY CAST(t AS VARCHAR)), '')) FROM blade.{TABLES[data_type]} t").fetchall()[0]


def fresh(rows: int, seed: int = 42, **kwargs: object) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    kwargs = {"end": END, "days": DAYS, "invalid_fraction": FRACTION} | kwargs
    generator.seed(con, rows, seed, **kwargs)
    return con


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    """One seeded warehouse shared by the read-only tests."""
    connection = fresh(ROWS)
    yield connection
    connection.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    return con.sql(sql).fetchall()[0][0]


# --- shape -------------------------------------------------------------------------------------
def test_tables_and_columns(con: duckdb.DuckDBPyConnection) -> None:
    assert TABLES == {
        "maintenance": "blade_maintenance_data", "sortie": "blade_sortie_data",
        "supply": "blade_supply_data", "readiness": "blade_readiness_data"}
    for data_type, table in TABLES.items():
        described = con.sql(f"DESCRIBE blade.{table}").fetchall()
        assert [(r[0], r[1]) for r in described] == list(COLUMNS[data_type])
    timestamps = [name for cols in COLUMNS.values() for name, typ in cols if typ == "TIMESTAMP"]
    assert "last_modified" in timestamps and "takeoff_time" in timestamps


def test_create_tables_is_idempotent_and_keeps_rows(con: duckdb.DuckDBPyConnection) -> None:
    generator.create_tables(con)
    generator.create_tables(con)
    assert scalar(con, "SELECT count(*) FROM blade.blade_supply_data") == ROWS
    other = duckdb.connect()
    generator.create_tables(other, schema="elsewhere")
    assert {r[0] for r in other.sql(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'elsewhere'").fetchall()
    } == set(TABLES.values())


def test_row_counts_and_reseed(con: duckdb.DuckDBPyConnection) -> None:
    for table in TABLES.values():
        assert scalar(con, f"SELECT count(*) FROM blade.{table}") == ROWS
    other = fresh(1_000)
    assert generator.seed(other, 300, 1, end=END) == dict.fromkeys(TABLES, 300)
    for table in TABLES.values():  # re-seeding replaces, never appends
        assert scalar(other, f"SELECT count(*) FROM blade.{table}") == 300
    # no helper objects left behind, and no unfinished result on the connection (DuckDB 2.0)
    assert scalar(other, "SELECT count(*) FROM duckdb_tables() WHERE temporary") == 0
    assert other.sql("SELECT 1").fetchall() == [(1,)]


def test_empty_and_bad_arguments() -> None:
    con = fresh(0)
    assert all(content_hash(con, d)[0] == 0 for d in TABLES)
    assert generator.invalid_rows(con, "maintenance").num_rows == 0
    with pytest.raises(ValueError):
        generator.seed(con, -1)
    with pytest.raises(ValueError):
        generator.seed(con, 10, invalid_fraction=0.9)
    with pytest.raises(ValueError):
        generator.seed(con, 10, seed=2**64)


# --- determinism -------------------------------------------------------------------------------
def test_same_parameters_same_contents(con: duckdb.DuckDBPyConnection) -> None:
    again = fresh(ROWS)
    for data_type in TABLES:
        assert content_hash(again, data_type) == content_hash(con, data_type)
    # ... even in the same physical order
    first = con.sql("SELECT record_id FROM blade.blade_maintenance_data LIMIT 3").fetchall()
    assert first == [("000000001",), ("000000002",), ("000000003",)]


@pytest.mark.parametrize("change", [{"seed": 43}, {"end": END - dt.timedelta(days=1)},
                                    {"days": 365}, {"invalid_fraction": 0.01}])
def test_other_parameters_other_contents(change: dict) -> None:
    base, other = fresh(2_000), fresh(2_000, **change)
    for data_type in TABLES:
        assert content_hash(other, data_type) != content_hash(base, data_type)


def test_other_row_count_keeps_rows_valid_in_both() -> None:
    small, big = fresh(3_000), fresh(5_000)
    for data_type, table in TABLES.items():
        invalid = {r for c in (small, big)
                   for r in generator.invalid_rows(c, data_type)["row_index"].to_pylist()}
        small_rows = small.sql(f"SELECT * FROM blade.{table}").fetchall()
        big_rows = big.sql(f"SELECT * FROM blade.{table} LIMIT 3000").fetchall()
        same = [i for i in range(3_000) if i not in invalid]
        assert len(same) > 2_800
        assert [small_rows[i] for i in same] == [big_rows[i] for i in same]


# --- invalid rows ------------------------------------------------------------------------------
def test_invalid_share_and_kinds(con: duckdb.DuckDBPyConnection) -> None:
    expected = round(ROWS * FRACTION)
    seen_kinds = set()
    for data_type in TABLES:
        inv = generator.invalid_rows(con, data_type)
        assert inv.num_rows == expected
        kinds = Counter(inv["kind"].to_pylist())
        assert set(kinds) == set(INVALID_FIELDS[data_type]) <= set(INVALID_KINDS)
        assert max(kinds.values()) - min(kinds.values()) <= 1  # evenly split
        fields = Counter(zip(inv["kind"].to_pylist(), inv["field"].to_pylist(), strict=True))
        assert {(k, f) for k, fs in INVALID_FIELDS[data_type].items() for f in fs} == set(fields)
        rows = sorted(inv["row_index"].to_pylist())
        assert all(b - a > 1 for a, b in itertools.pairwise(rows))  # spread out
        seen_kinds |= set(kinds)
    assert seen_kinds == set(INVALID_KINDS)


@pytest.mark.parametrize("data_type", list(TABLES))
def test_invalid_rows_are_exactly_the_broken_ones(
    con: duckdb.DuckDBPyConnection, data_type: str
) -> None:
    table, pk = TABLES[data_type], PRIMARY_KEYS[data_type]
    inv = generator.invalid_rows(con, data_type)
    kinds = inv["kind"].to_pylist()
    broken = scalar(con, f"SELECT count(*) FROM blade.{table} WHERE {VIOLATION[data_type]}")
    assert broken == sum(k != "duplicate_key" for k in kinds)
    duplicates = scalar(con, f"SELECT count({pk}) - count(DISTINCT {pk}) FROM blade.{table}")
    assert duplicates == kinds.count("duplicate_key")
    # each reported invalid row is there under its reported key, breaking the reported field
    con.register("inv", inv)
    try:
        mismatched = scalar(con, f"""
            SELECT count(*) FROM inv LEFT JOIN blade.{table} t ON t.{pk} = inv.key
            WHERE inv.key IS NOT NULL AND inv.kind <> 'duplicate_key'
              AND (t.{pk} IS NULL OR NOT ({VIOLATION[data_type]}))""")
        null_keys = scalar(con, f"SELECT count(*) FROM blade.{table} WHERE {pk} IS NULL")
        reported_null = scalar(con, "SELECT count(*) FROM inv WHERE key IS NULL")
    finally:
        con.unregister("inv")
    assert mismatched == 0
    assert null_keys == reported_null == sum(
        1 for k, f in zip(kinds, inv["field"].to_pylist(), strict=True)
        if k == "missing_key" and f == pk)


def test_no_invalid_rows_when_fraction_is_zero() -> None:
    con = fresh(2_000, invalid_fraction=0.0)
    for data_type, table in TABLES.items():
        assert generator.invalid_rows(con, data_type).num_rows == 0
        assert scalar(con, f"SELECT count(*) FROM blade.{table} WHERE {VIOLATION[data_type]}") == 0
        pk = PRIMARY_KEYS[data_type]
        assert scalar(con, f"SELECT count(DISTINCT {pk}) FROM blade.{table}") == 2_000


# --- value domains of valid rows ---------------------------------------------------------------
def valid(data_type: str) -> str:
    return f"(SELECT * FROM blade.{TABLES[data_type]} WHERE NOT ({VIOLATION[data_type]}))"


def test_valid_rows_have_plausible_values(con: duckdb.DuckDBPyConnection) -> None:
    lo, hi = END - dt.timedelta(days=DAYS), END
    for data_type, table in TABLES.items():
        assert con.sql(f"SELECT min(last_modified) >= DATE '{lo}', max(last_modified) < DATE "
                       f"'{hi}', count(*) = count(last_modified) FROM blade.{table}"
                       ).fetchall() == [(True, True, True)]
        classes = dict(con.sql(
            f"SELECT classification, count(*) FROM blade.{table} GROUP BY 1").fetchall())
        assert set(classes) == {"UNCLASS", "CUI"} and classes["UNCLASS"] > 0.9 * ROWS
        if data_type != "supply":
            types = {r[0] for r in con.sql(f"SELECT DISTINCT aircraft_type FROM {valid(data_type)}"
                                           ).fetchall()}
            assert types == set(AIRCRAFT)
            bad_base = "base IS NULL OR NOT regexp_matches(base, '(AFB|AB|ARB)$|^(JB|RAF) ')"
            assert scalar(con, f"SELECT count(*) FROM {valid(data_type)} WHERE {bad_base}") == 0
    # sorties: flight_hours is landing - takeoff, plausible per type; timestamps near activity
    hours = con.sql(f"""SELECT max(abs(flight_hours - date_diff('second', takeoff_time,
                          landing_time) / 3600.0)), min(flight_hours), max(flight_hours)
                       FROM {valid('sortie')}""").fetchall()[0]
    assert hours == (0.0, 0.1, pytest.approx(20, abs=1.0))
    assert scalar(con, f"SELECT max(flight_hours) FROM {valid('sortie')} "
                       "WHERE aircraft_type = 'F-16C'") <= 2.5
    assert scalar(con, f"SELECT count(*) FROM {valid('sortie')} WHERE status IN "
                       "('COMPLETED', 'ABORTED') AND landing_time > last_modified") == 0
    # maintenance: labor by status, descriptions from templates, priority mix
    assert con.sql(f"""SELECT max(labor_hours) FILTER (WHERE status = 'OPEN'),
                              min(labor_hours) FILTER (WHERE status = 'COMPLETED') > 0,
                              count(DISTINCT description) > 500,
                              count(*) FILTER (WHERE description IS NULL OR description = '')
                       FROM {valid('maintenance')}""").fetchall() == [(0.0, True, True, 0)]
    # supply: cost > 0, quantities >= 0, stock-outs exist, nomenclature per class (NSNs are
    # unique but for the seeded duplicates: see the invalid-row tests)
    assert con.sql(f"""SELECT min(unit_cost) > 0,
                              min(quantity_on_hand) = 0, count(DISTINCT nomenclature) > 40,
                              count(DISTINCT left(part_number, 4))
                       FROM {valid('supply')}""").fetchall() == [(True, True, True, 16)]
    assert scalar(con, f"SELECT typeof(unit_cost) FROM {valid('supply')} LIMIT 1"
                  ) == "DECIMAL(12,2)"
    # readiness: reason NULL exactly for FMC, FMC most common
    assert con.sql(f"""SELECT count(*) FILTER (WHERE (status = 'FMC') <> (reason IS NULL)),
                              count(*) FILTER (WHERE status = 'FMC') > 0.6 * count(*)
                       FROM {valid('readiness')}""").fetchall() == [(0, True)]


def test_fleet_is_consistent_across_tables(con: duckdb.DuckDBPyConnection) -> None:
    union = " UNION ALL ".join(
        f"SELECT tail_number, aircraft_type, base FROM {valid(d)}" for d in TABLES
        if d != "supply")
    per_tail = con.sql(f"""SELECT max(n_types), max(n_bases), count(*) FROM (
        SELECT tail_number, count(DISTINCT aircraft_type) n_types, count(DISTINCT base) n_bases
        FROM ({union}) GROUP BY ALL)""").fetchall()[0]
    assert per_tail[:2] == (1, 1) and 1_000 < per_tail[2] <= 2_400
    # Zipf-ish: the busiest 10 % of tails fly far more than 10 % of the sorties
    top_share = scalar(con, f"""SELECT sum(n) FILTER (WHERE rk <= 0.1 * cnt) / sum(n) FROM (
        SELECT count(*) n, row_number() OVER (ORDER BY count(*) DESC) rk,
               count(*) OVER () cnt FROM {valid('sortie')} GROUP BY tail_number)""")
    assert top_share > 0.25


# --- distributions over time -------------------------------------------------------------------
@pytest.mark.parametrize("data_type,ratio", [("maintenance", 2.0), ("sortie", 4.0),
                                             ("supply", 3.0), ("readiness", 1.05)])
def test_more_activity_on_weekdays(
    con: duckdb.DuckDBPyConnection, data_type: str, ratio: float
) -> None:
    weekday, weekend = con.sql(f"""
        SELECT avg(n) FILTER (WHERE isodow(d) <= 5), avg(n) FILTER (WHERE isodow(d) > 5)
        FROM (SELECT CAST(last_modified AS DATE) d, count(*) n
              FROM blade.{TABLES[data_type]} GROUP BY 1)""").fetchall()[0]
    assert weekday > ratio * weekend


def test_days_covered_growth_and_working_hours(con: duckdb.DuckDBPyConnection) -> None:
    days = dict(con.sql("SELECT CAST(last_modified AS DATE), count(*) "
                        "FROM blade.blade_readiness_data GROUP BY 1").fetchall())
    assert len(days) == DAYS and END not in days and END - dt.timedelta(days=DAYS) in days
    first = sum(days[END - dt.timedelta(days=DAYS - k)] for k in range(120))
    last = sum(days[END - dt.timedelta(days=k)] for k in range(1, 121))
    assert last > 1.1 * first  # activity grows over the window
    day_shift = scalar(con, """SELECT avg(CASE WHEN hour(last_modified) BETWEEN 6 AND 17
                                              THEN 1 ELSE 0 END)
                               FROM blade.blade_maintenance_data""")
    assert day_shift > 0.65
    distinct_times = scalar(con, "SELECT count(DISTINCT last_modified) / count(*) "
                                 "FROM blade.blade_sortie_data")
    assert distinct_times > 0.99  # real times of day, not midnight stamps


# --- change feed -------------------------------------------------------------------------------
def snapshot(con: duckdb.DuckDBPyConnection, data_type: str) -> dict[object, tuple]:
    pk = PRIMARY_KEYS[data_type]
    rows = con.sql(f"SELECT * FROM blade.{TABLES[data_type]} WHERE {pk} IS NOT NULL").fetchall()
    return {r[0]: r for r in rows}


def test_change_feed_inserts_and_updates() -> None:
    con = fresh(5_000, seed=7, invalid_fraction=0.05)
    before = {d: snapshot(con, d) for d in TABLES}
    invalid_keys = {d: set(generator.invalid_rows(con, d)["key"].to_pylist()) for d in TABLES}
    now = dt.datetime(2025, 7, 1, 9, 30, 15, 123456)
    assert generator.apply_changes(con, inserts=50, updates=40, now=now, seed=1) == dict.fromkeys(
        TABLES, (50, 40))
    for data_type, table in TABLES.items():
        pk = PRIMARY_KEYS[data_type]
        assert scalar(con, f"SELECT count(*) FROM blade.{table}") == 5_050
        after = snapshot(con, data_type)
        touched = {k: r for k, r in after.items() if r[-1] == now}
        assert len(touched) == 90
        new = {k for k in touched if k not in before[data_type]}
        changed = {k for k in touched if k in before[data_type]}
        assert len(new) == 50 and len(changed) == 40
        assert not changed & invalid_keys[data_type]  # never an invalid (or duplicated) row
        if data_type != "supply":
            assert min(new) > max(before[data_type])
        assert all(after[k][:-1] != before[data_type][k][:-1] for k in changed)
        # every touched row is valid, keys stay unique apart from the seeded duplicates
        keys = ", ".join(f"'{k}'" for k in touched)
        assert scalar(con, f"SELECT count(*) FROM blade.{table} WHERE {pk} IN ({keys}) "
                           f"AND ({VIOLATION[data_type]})") == 0
        assert scalar(con, f"SELECT count({pk}) - count(DISTINCT {pk}) FROM blade.{table}"
                      ) == Counter(generator.invalid_rows(con, data_type)["kind"].to_pylist()
                                   )["duplicate_key"]
    # the next tick continues after the new keys; an aware `now` is stored as UTC
    later = dt.datetime(2025, 7, 1, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    generator.apply_changes(con, inserts=5, updates=0, now=later, seed=2)
    assert con.sql("SELECT min(record_id), count(*) FROM blade.blade_maintenance_data "
                   "WHERE last_modified = TIMESTAMP '2025-07-01 09:00:00'").fetchall() == [
        ("000005051", 5)]


def test_change_feed_is_deterministic_and_works_on_empty_tables() -> None:
    now = dt.datetime(2025, 7, 2, 8, 0)
    a, b = fresh(2_000), fresh(2_000)
    for con in (a, b):
        generator.apply_changes(con, inserts=20, updates=30, now=now, seed=5)
    for data_type in TABLES:
        assert content_hash(a, data_type) == content_hash(b, data_type)
    empty = duckdb.connect()
    assert generator.apply_changes(empty, inserts=3, updates=3, now=now, seed=1) == dict.fromkeys(
        TABLES, (3, 0))
    assert scalar(empty, "SELECT min(sortie_id) FROM blade.blade_sortie_data") == "000000001"
