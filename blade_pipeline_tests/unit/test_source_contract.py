"""The contract between the three descriptions of a BLADE table: the mock warehouse's DDL
(devservices/warehouse/tables.py), sources.yaml and the Pandera models (schemas.py).

A column renamed, retyped or added in one of them and not the others fails here, not in a
materialization against the mock."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.devservices.warehouse.tables import COLUMNS, PRIMARY_KEYS, TABLES
from blade_pipeline.schemas import SCHEMAS
from blade_pipeline.sources import load_sources

SOURCES = {source.data_type: source for source in load_sources()}


@pytest.fixture(scope="module")
def seeded() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    generator.seed(con, rows=500, invalid_fraction=0.0)
    return con


def test_every_source_has_a_mock_table_and_a_model_and_nothing_else_does():
    assert set(SOURCES) == set(TABLES) == set(COLUMNS) == set(SCHEMAS)


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
