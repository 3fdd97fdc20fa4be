"""Schema versions recorded by real staging runs (issue 20, first part): the first run records
v1, an unchanged table records nothing, a column added through plain Databricks SQL
(``ALTER TABLE … ADD COLUMN``) makes v2 with the change named, in the staged asset's metadata
and in ``blade schema history`` / ``diff``."""

from __future__ import annotations

import shutil

import dagster as dg

from blade_pipeline.assets import build_blade_assets, staged_key
from blade_pipeline.cli import main
from blade_pipeline.schema_versions import SchemaHistory
from blade_pipeline.sources import source_for
from blade_pipeline_tests.expectations import materialization
from blade_pipeline_tests.fast.conftest import DAY, warehouse_at

SOURCE = source_for("readiness")


def staged_metadata(resources) -> dict:
    result = dg.materialize(build_blade_assets(SOURCE), resources=resources, partition_key=DAY)
    assert result.success
    return materialization(result, staged_key(SOURCE))


def test_versions_follow_the_table_and_the_cli_shows_them(resources, warehouse, tmp_path,
                                                          monkeypatch, capsys):
    own = warehouse_at(tmp_path / "changing.duckdb")  # a copy: this test alters the table
    warehouse.test_connection()  # seeded (the file exists) before it is copied
    warehouse.close()
    shutil.copy(warehouse.db_path, own.db_path)
    resources = {**resources, "warehouse": own}
    first = staged_metadata(resources)
    assert (first["schema_version"], first["schema_version_new"]) == (1, True)
    again = staged_metadata(resources)
    assert (again["schema_version"], again["schema_version_new"]) == (1, False)
    own.query_arrow(f"ALTER TABLE {SOURCE.warehouse.qualified_name} ADD COLUMN remarks STRING")
    changed = staged_metadata(resources)
    assert (changed["schema_version"], changed["schema_version_new"]) == (2, True)
    assert changed["schema_changes"] == ["ADD_COLUMN remarks string"]
    history = SchemaHistory(resources["lake"], SOURCE.data_type)
    assert [v.version for v in history.versions()] == [1, 2]

    monkeypatch.setenv("BLADE_LAKE_URI", resources["lake"].uri)
    assert main(["schema", "history", "readiness"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("v1 ") and lines[0].endswith("first version")
    assert lines[1].startswith("v2 ") and lines[1].endswith("ADD_COLUMN remarks string")
    assert main(["schema", "diff", "readiness", "v1", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ADD_COLUMN remarks string",
                                                    "1 change(s) from v1 to v2"]
    assert main(["schema", "diff", "readiness", "1", "9"]) == 1
    assert "readiness has no schema version 9 (known: v1, v2)" in capsys.readouterr().err
    own.close()
