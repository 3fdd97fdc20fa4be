"""Source declarations and the guard on user SQL filters."""

import re
import textwrap
from pathlib import Path

import pytest

from blade_pipeline.config.sources import (
    SOURCES_FILE,
    SourcesFileError,
    configured_sources_file,
    default_sources,
    load_sources,
    source_for,
)
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.user_filters import UnsafeFilterError, select_sql, validate_filter


def test_the_blade_sources_load():
    sources = default_sources()
    assert [(s.data_type, s.kind) for s in sources] == [
        ("maintenance", "databricks"), ("sortie", "databricks"), ("supply", "databricks"),
        ("readiness", "databricks"), ("maintenance_unit_b", "postgres"),
        ("supply_drops", "csv"), ("sortie_events", "push")]
    maint = source_for("maintenance")
    assert source_sql.table(maint) == "`main`.`blade`.`blade_maintenance_data`"
    assert maint.catalog_data_source == "BLADE:maintenance"


def test_blade_sources_file_replaces_the_packaged_file(tmp_path, monkeypatch):
    """BLADE_SOURCES_FILE: a deployment's own sources (relative paths from the working
    directory); unset, the packaged file."""
    own = tmp_path / "sources.yaml"
    own.write_text(SOURCES_FILE.read_text().replace("data_type: sortie", "data_type: sorties"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BLADE_SOURCES_FILE", "sources.yaml")
    assert configured_sources_file() == Path("sources.yaml")
    default_sources.cache_clear()
    try:
        assert "sorties" in [s.data_type for s in default_sources()]
        monkeypatch.setenv("BLADE_SOURCES_FILE", str(tmp_path / "missing.yaml"))
        default_sources.cache_clear()
        with pytest.raises(SourcesFileError, match=r"cannot read .*missing\.yaml"):
            default_sources()
        monkeypatch.delenv("BLADE_SOURCES_FILE")
        assert configured_sources_file() == SOURCES_FILE
    finally:
        default_sources.cache_clear()


def test_unknown_data_type_names_the_known_ones():
    with pytest.raises(SourcesFileError, match="known: maintenance, sortie"):
        source_for("weather")


def test_a_bad_entry_is_named_with_its_field(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent("""
        sources:
          - name: good
            display_name: Good
            data_type: good
            warehouse: {catalog: main, schema: blade, table: t, warehouse_id: w}
            primary_key: id
            item_id_prefix: GOOD
            partition_start: "2024-01-01"
          - name: broken
            display_name: Broken
            data_type: broken
            warehouse: {catalog: main, schema: blade, table: "t; drop", warehouse_id: w}
            primary_key: id
            item_id_prefix: lower
            partition_start: "not a date"
    """))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    text = str(err.value)
    assert "entry 'broken', field 'warehouse.table'" in text
    assert "entry 'broken', field 'item_id_prefix'" in text
    assert "entry 'broken', field 'partition_start'" in text
    assert "'good'" not in text


def test_a_schema_policy_outside_its_choices_is_named(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent("""
        sources:
          - name: strict
            display_name: Strict
            data_type: strict
            warehouse: {catalog: main, schema: blade, table: t, warehouse_id: w}
            primary_key: id
            item_id_prefix: STRICT
            partition_start: "2024-01-01"
            schema_policy: {on_new_column: keep, on_dropped_column: allow}
    """))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert ("entry 'strict', field 'schema_policy.on_new_column': Input should be 'evolve', "
            "'ignore' or 'fail'") in str(err.value)
    assert "on_dropped_column" not in str(err.value)
    defaults = source_for("supply").schema_policy
    assert (defaults.on_new_column, defaults.on_type_change, defaults.on_dropped_column) == (
        "evolve", "fail", "fail")


def test_not_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("sources: [unclosed")
    with pytest.raises(SourcesFileError, match="not valid YAML"):
        load_sources(path)


@pytest.mark.parametrize("where", [
    "priority = 'HIGH'", "labor_hours > 2.5 AND base LIKE 'Nellis%'",
    "description = 'a; b -- c'", "`priority` IN ('HIGH', 'LOW')",
    "priority RLIKE '^H'", "last_modified > date_sub(current_date(), 30)",
    "array_contains(array('HIGH', 'LOW'), priority)", "description = 'x (y'",
    "labor_hours::INT > 2 AND due_date < DATE'2026-01-01' + INTERVAL 3 DAYS",
])
def test_databricks_filters_pass(where):
    assert validate_filter(where) == where


@pytest.mark.parametrize(("where", "reason"), [
    ("1=1; DROP TABLE x", "';' is not allowed"),
    ("1=1 -- comment", "comments are not allowed"),
    ("1=1 /* c */", "comments are not allowed"),
    ("1=1) UNION SELECT * FROM secrets WHERE (1=1", "unbalanced"),
    ("(a = 1", "unbalanced"),
    ("a = (DELETE FROM t)", "PARSE_SYNTAX_ERROR"),
    ("", "empty"),
    ("priority = 'unterminated", "PARSE_SYNTAX_ERROR"),
    ("regexp_matches(priority, '^H')", r"UNRESOLVED_ROUTINE.*regexp_matches.*42883"),
    ("priority", "a value, not a condition"),
])
def test_unsafe_or_non_databricks_filters_are_rejected_with_a_reason(where, reason):
    with pytest.raises(UnsafeFilterError, match=reason):
        validate_filter(where)


def test_select_sql_uses_the_source_table():
    sql = select_sql(source_for("supply"), "quantity_on_hand < 0", limit=5, order_by_key=True)
    assert sql == ("SELECT * FROM `main`.`blade`.`blade_supply_data` WHERE (quantity_on_hand < 0)"
                   " ORDER BY `part_number` LIMIT 5")


def test_a_source_kind_names_where_its_rows_are(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent("""
        sources:
          - name: unit_b
            display_name: Unit B maintenance
            data_type: maintenance_unit_b
            model: maintenance
            kind: postgres
            warehouse: {catalog: main, schema: blade, table: t, warehouse_id: w}
            primary_key: record_id
            item_id_prefix: MAINTB
            partition_start: "2024-01-01"
    """))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert "kind postgres needs a 'database' entry" in str(err.value)
    path.write_text(path.read_text().replace(
        "warehouse: {catalog: main, schema: blade, table: t, warehouse_id: w}",
        "database: {schema: blade, table: blade_maintenance_data}"))
    [source] = load_sources(path)
    assert (source.resource_key, source.table_label, source.model_name) == (
        "postgres", "postgres:blade.blade_maintenance_data", "maintenance")
    path.write_text(path.read_text().replace("model: maintenance", "model: maintenence"))
    with pytest.raises(SourcesFileError, match=re.escape(
            "field 'model': Value error, no Pandera model 'maintenence' in pandera_models.py")):
        load_sources(path)


def test_every_databricks_text_translates_to_postgres_with_positional_parameters():
    from blade_pipeline.sources import sql as source_sql
    from blade_pipeline.sources.postgres import postgres_sql

    source = source_for("supply")
    text, names = postgres_sql(source_sql.duplicate_keys(
        source, source_sql.partition_rows(source, 2), by_day=True))
    assert names == ("start", "end")
    assert '"last_modified" >= $1 AND "last_modified" < $2' in text
    assert '"main"."blade"."blade_supply_data"' in text and "`" not in text
    assert postgres_sql(source_sql.changed_days(source))[1] == ("cursor",)


def test_day_bounds_are_written_as_typed_literals_so_the_driver_streams_copy():
    """Timestamps and dates become CAST literals (no bound parameter: ADBC then streams
    PostgreSQL's COPY instead of buffering the whole result); text stays bound."""
    import datetime as dt

    from blade_pipeline.sources import sql as source_sql
    from blade_pipeline.sources.postgres import postgres_statement

    source = source_for("supply")
    sql = source_sql.partition_rows(source, 2)
    text, args = postgres_statement(sql, {"start": dt.datetime(2026, 6, 29),
                                          "end": dt.datetime(2026, 6, 30, 0, 0, 0, 5)})
    assert args == ()
    assert ("\"last_modified\" >= CAST('2026-06-29 00:00:00.000000' AS TIMESTAMP) AND "
            "\"last_modified\" < CAST('2026-06-30 00:00:00.000005' AS TIMESTAMP)") in text
    text, args = postgres_statement(sql, {"start": "2026-06-29'; DROP TABLE x; --",
                                          "end": dt.datetime(2026, 6, 30)})
    assert "$1" in text and "DROP" not in text and args[0].startswith("2026-06-29'")
    aware = dt.datetime(2026, 6, 29, tzinfo=dt.UTC)  # (a zone would be dropped by the cast)
    assert postgres_statement(sql, {"start": aware, "end": aware})[1] == (aware, aware)
    with pytest.raises(ValueError, match="no value for parameter"):
        postgres_statement(sql, {"start": dt.datetime(2026, 6, 29)})


CSV_ENTRY = """
    sources:
      - name: supplier_drops
        display_name: Supply (supplier drops)
        data_type: supply_drops
        model: supply
        kind: csv
        csv:
          folder: supplier
          columns: {part_number: string, quantity_on_hand: int, unit_cost: "decimal(12,2)",
                    ok: boolean, due: date, last_modified: timestamp}
        primary_key: part_number
        item_id_prefix: DROP
        partition_start: "2024-01-01"
"""


def test_a_csv_source_declares_its_columns_with_the_seed_type_map(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent(CSV_ENTRY))
    [source] = load_sources(path)
    assert (source.resource_key, source.table_label) == ("csv", "csv:supplier")
    assert source.csv.duckdb_types() == {
        "part_number": "VARCHAR", "quantity_on_hand": "BIGINT", "unit_cost": "DECIMAL(12,2)",
        "ok": "BOOLEAN", "due": "DATE", "last_modified": "TIMESTAMPTZ"}
    assert source_sql.table(source) == "`landed`.`supplier`"
    for wrong, message in [
        ("unit_cost: money", "column 'unit_cost': 'money' is not a CSV column type"),
        ("unit_cost: \"decimal(40,2)\"", "is not a CSV column type"),
    ]:
        path.write_text(textwrap.dedent(CSV_ENTRY).replace("unit_cost: \"decimal(12,2)\"",
                                                           wrong))
        with pytest.raises(SourcesFileError, match=re.escape(message)):
            load_sources(path)
    path.write_text(textwrap.dedent(CSV_ENTRY).replace("last_modified: timestamp",
                                                       "last_modified: date"))
    with pytest.raises(SourcesFileError, match="the watermark 'last_modified' must be a "
                                               "timestamp"):
        load_sources(path)
    path.write_text(textwrap.dedent(CSV_ENTRY).replace("part_number: string, ", ""))
    with pytest.raises(SourcesFileError, match="must declare the primary_key 'part_number'"):
        load_sources(path)


def test_the_csv_resource_reads_databricks_sql_over_the_landed_folders():
    from blade_pipeline.sources.lake_rows import duckdb_sql

    text, folders = duckdb_sql("SELECT CAST(`last_modified` AS DATE) AS day, count(*) AS rows "
                               "FROM `landed`.`supplier-x` WHERE `last_modified` >= :start "
                               "GROUP BY 1", "landed")
    assert folders == ("supplier-x",)
    assert "FROM landed__supplier_x WHERE" in text and "$start" in text
