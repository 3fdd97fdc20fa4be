"""The contract between the three descriptions of a BLADE table: the mock warehouse's DDL
(devservices/warehouse/tables.py), sources.yaml and the Pandera models (config/pandera_models.py).

A column renamed, retyped or added in one of them and not the others fails here, not in a
materialization against the mock."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from blade_pipeline.config.pandera_models import SCHEMAS
from blade_pipeline.config.sources import load_sources
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.tables import COLUMNS, PRIMARY_KEYS, TABLES

#: the Databricks sources (each reads the mock table of its data type); other kinds read a
#: model's table elsewhere (PostgreSQL seeded from the same generator, CSV drops of it)
SOURCES = {s.data_type: s for s in load_sources() if s.kind == "databricks"}
OTHER_KINDS = [s for s in load_sources() if s.kind != "databricks"]


@pytest.fixture(scope="module")
def seeded() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    generator.seed(con, rows=500, invalid_fraction=0.0)
    return con


def test_every_source_has_a_mock_table_and_a_model_and_nothing_else_does():
    assert set(SOURCES) == set(TABLES) == set(COLUMNS) == set(SCHEMAS)
    assert {s.model_name for s in OTHER_KINDS} <= set(SCHEMAS)


@pytest.mark.parametrize("source", OTHER_KINDS, ids=lambda s: s.data_type)
def test_a_source_of_another_kind_reads_its_model_s_generated_table(source):
    """The PostgreSQL source reads the table the generator seeds there; the CSV source
    declares that table's columns, each with the type the drops' text is parsed as."""
    columns = dict(COLUMNS[source.model_name])
    assert source.primary_key == PRIMARY_KEYS[source.model_name]
    if source.kind == "postgres":
        assert source.database.table == TABLES[source.model_name]
        return
    declared = (source.csv or source.push).duckdb_types()
    assert list(declared) == list(columns)  # the order the generator's CSV is written in
    same = {"INTEGER": "BIGINT", "TIMESTAMP": "TIMESTAMPTZ"}
    assert {n: same.get(t, t) for n, t in columns.items()} == declared


@pytest.mark.parametrize("data_type", sorted(TABLES))
def test_sources_yaml_names_the_mock_table_and_its_columns(data_type):
    source, columns = SOURCES[data_type], dict(COLUMNS[data_type])
    assert source.warehouse.table == TABLES[data_type]
    assert source.primary_key == PRIMARY_KEYS[data_type]
    assert source.watermark_column in columns and columns[source.watermark_column] == "TIMESTAMP"
    if source.classification.column:
        assert source.classification.column in columns


@pytest.mark.parametrize("data_type", sorted(TABLES))
def test_the_model_has_exactly_the_table_columns_with_the_types_the_warehouse_sends(
        data_type, seeded):
    table = seeded.sql(f"SELECT * FROM blade.{TABLES[data_type]}").arrow()
    frame = pl.from_arrow(table)
    model = SCHEMAS[data_type].to_schema()
    assert set(model.columns) == set(frame.columns)
    for name, column in model.columns.items():
        assert column.dtype.check(frame.schema[name]), (name, column.dtype, frame.schema[name])
    # valid generated rows pass the model as they come from the warehouse (no coercion)
    SCHEMAS[data_type].validate(frame, lazy=True)
