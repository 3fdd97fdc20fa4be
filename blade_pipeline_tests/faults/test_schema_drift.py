"""Case 8: schema drift in the warehouse table, made with DDL through the connector."""

from __future__ import annotations

import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline_tests.faults.conftest import (
    ROWS,
    WAREHOUSE_ARGS,
    assert_exact,
    catalog_items,
    checks,
    failure_messages,
    make_resources,
    materialization,
    materialized,
    run,
)


@pytest.fixture(scope="module")
def drift_warehouse(start_warehouse):
    """A warehouse of its own: these cases alter its tables."""
    return start_warehouse(ROWS, *WAREHOUSE_ARGS)


def ddl(res, statement: str) -> None:
    warehouse: DatabricksWarehouse = res["warehouse"]
    warehouse.query_arrow(statement)


def test_8a_added_column_passes_and_is_recorded_as_drift(
        drift_warehouse, start_catalog, lake_dir, dagster_instance, reference_db, recorded):
    res = make_resources(drift_warehouse, start_catalog(), lake_dir)
    ddl(res, "ALTER TABLE main.blade.blade_maintenance_data ADD COLUMN extra_note STRING")
    source = source_for("maintenance")
    result = run(source, res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    assert materialization(result, staged_key(source))["extra_columns"] == ["extra_note"]
    conforms = checks(result)["schema_conforms"]
    assert conforms.passed and conforms.metadata["extra_columns"].value == ["extra_note"]
    items = assert_exact(res, reference_db, "maintenance")
    assert materialization(result, catalog_key(source))["created"] == len(items)


@pytest.mark.parametrize(("data_type", "statement", "column"), [
    ("sortie", "ALTER TABLE main.blade.blade_sortie_data DROP COLUMN mission_type",
     "mission_type"),
    ("supply", "ALTER TABLE main.blade.blade_supply_data ALTER COLUMN quantity_on_hand "
               "TYPE STRING", "quantity_on_hand"),
], ids=["dropped", "retyped"])
def test_8b_dropped_or_retyped_required_column_blocks_the_upload(
        data_type, statement, column, drift_warehouse, start_catalog, lake_dir,
        dagster_instance, recorded):
    res = make_resources(drift_warehouse, start_catalog(), lake_dir)
    ddl(res, statement)
    source = source_for(data_type)
    result = run(source, res, dagster_instance, recorded)
    assert not result.success
    conforms = checks(result)["schema_conforms"]
    assert not conforms.passed
    assert column in conforms.description
    assert column in " ".join(conforms.metadata["schema_errors"].value)
    assert not materialized(result, catalog_key(source))
    assert catalog_items(res["catalog"], source.catalog_data_source) == []
