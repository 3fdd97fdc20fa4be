"""The SQL the pipeline sends to the warehouse is built in one module."""

import re
from pathlib import Path

import pytest
from sqlglot import exp

import blade_pipeline
from blade_pipeline import databricks_sql
from blade_pipeline.config.sources import default_sources
from blade_pipeline.sources import sql as source_sql

PACKAGE = Path(blade_pipeline.__file__).parent
#: modules with SQL of their own that never goes to the warehouse: DuckDB in this process
LOCAL_SQL = {"items.py", "user_filters.py", "sql.py", "csv_landing.py"}
SQL_TEXT = re.compile(r"""f["'](SELECT|WITH|INSERT|UPDATE|DELETE|MERGE)\b""", re.IGNORECASE)


def test_no_other_pipeline_module_writes_warehouse_sql():
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path.name not in LOCAL_SQL and path.parts[len(PACKAGE.parts)] not in
                 ("devservices", "bench") and SQL_TEXT.search(path.read_text())]
    assert offenders == []


def test_identifiers_are_quoted_and_a_backtick_inside_is_doubled():
    assert source_sql.ident("odd`name") == "`odd``name`"


@pytest.mark.parametrize("source", default_sources(), ids=lambda s: s.data_type)
def test_values_travel_as_parameters_never_as_text(source):
    texts = [source_sql.partition_rows(source), source_sql.partition_rows(source, 3),
             source_sql.rows_by_keys(source), source_sql.changed_days(source),
             source_sql.newest_watermark(source),
             source_sql.duplicate_keys(source, source_sql.partition_rows(source), True)]
    for text in texts:
        assert "'" not in text and source_sql.table(source) in text
    assert ":start" in texts[0] and ":keys" in texts[2] and ":cursor" in texts[3]


@pytest.mark.parametrize("source", default_sources(), ids=lambda s: s.data_type)
def test_every_text_is_databricks_sql(source):
    """Each text, read as Databricks reads it (sqlglot's databricks dialect, Databricks'
    built-in functions): a DuckDB-ism here would pass the mock and fail in production."""
    rows = source_sql.partition_rows(source, 3)
    texts = [source_sql.partition_rows(source), rows, source_sql.rows_by_keys(source),
             source_sql.changed_days(source), source_sql.rows_per_day(source),
             source_sql.newest_watermark(source), source_sql.ping(),
             source_sql.duplicate_keys(source, rows), source_sql.duplicate_keys(
                 source, rows, by_day=True),
             source_sql.filtered_rows(source, "priority = 'HIGH'", 10, True),
             source_sql.filtered_rows(source, None, None, False)]
    for text in texts:
        tree = databricks_sql.parse(text)  # DatabricksSqlError if Databricks would refuse it
        assert isinstance(tree, exp.Select), text


def test_a_duckdb_ism_is_caught():
    with pytest.raises(databricks_sql.DatabricksSqlError, match="UNRESOLVED_ROUTINE"):
        databricks_sql.parse("SELECT list_value(1) FROM main.blade.t")
