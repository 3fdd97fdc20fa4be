"""Schema versions recorded by real staging runs: the first run records v1, an
unchanged table records nothing, a column added through plain Databricks SQL (``ALTER TABLE …
ADD COLUMN``) makes v2 with the change named, in the staged asset's metadata and in ``blade
schema history`` / ``diff``; a change the policy lets through alerts once (the health sensor),
one it blocks fails its run instead. (Each policy, against the mock warehouse:
``faults/test_schema_policy.py``.)"""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from blade_pipeline.cli import main
from blade_pipeline.config.sources import SchemaPolicy, source_for
from blade_pipeline.definitions import defs
from blade_pipeline.defs.assets import build_blade_assets, staged_key
from blade_pipeline.ops.alerts import AlertSender
from blade_pipeline.ops.health_alerts import evaluate_health
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.steps.schema_versions import SchemaHistory
from blade_pipeline_tests.expectations import materialization
from blade_pipeline_tests.fast.conftest import DAY, warehouse_at

SOURCE = source_for("readiness")


def staged_metadata(resources) -> dict:
    result = dg.materialize(build_blade_assets(SOURCE), resources=resources, partition_key=DAY)
    assert result.success
    return materialization(result, staged_key(SOURCE))


@pytest.fixture
def own(warehouse, tmp_path):
    """A copy of the warehouse: these tests alter its tables."""
    copy = warehouse_at(tmp_path / "changing.duckdb")
    warehouse.test_connection()  # seeded (the file exists) before it is copied
    warehouse.close()
    shutil.copy(warehouse.db_path, copy.db_path)
    yield copy
    copy.close()


def test_versions_follow_the_table_and_the_cli_shows_them(resources, own, monkeypatch, capsys):
    resources = {**resources, "warehouse": own}
    first = staged_metadata(resources)
    assert (first["schema_version"], first["schema_version_new"]) == (1, True)
    again = staged_metadata(resources)
    assert (again["schema_version"], again["schema_version_new"]) == (1, False)
    own.query_arrow(f"ALTER TABLE {source_sql.table(SOURCE)} ADD COLUMN remarks STRING")
    changed = staged_metadata(resources)
    assert (changed["schema_version"], changed["schema_version_new"]) == (2, True)
    assert changed["schema_changes"] == [
        "ADD_COLUMN remarks string: evolved (on_new_column: evolve)"]
    assert changed["schema_expected_version"] == 2  # adopted: the policy allows it
    history = SchemaHistory(resources["lake"], SOURCE.data_type)
    assert [v.version for v in history.versions()] == [1, 2]

    monkeypatch.setenv("BLADE_LAKE_URI", resources["lake"].uri)
    assert main(["schema", "history", "readiness"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(" v1 ") and lines[0].endswith("first version")
    assert lines[1].startswith("*v2 ") and lines[1].endswith("ADD_COLUMN remarks string")
    assert lines[2] == "* expected: v2"
    assert "adopt v2 (was v1) by run " in lines[3]
    assert main(["schema", "diff", "readiness", "v1", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ADD_COLUMN remarks string",
                                                    "1 change(s) from v1 to v2"]
    assert main(["schema", "diff", "readiness", "1", "9"]) == 1
    assert "readiness has no schema version 9 (known: v1, v2)" in capsys.readouterr().err


def test_a_change_let_through_alerts_once_and_a_blocked_one_fails_its_run(resources, own):
    resources = {**resources, "warehouse": own}
    strict = SOURCE.model_copy(update={"schema_policy": SchemaPolicy(on_new_column="fail")})
    with dg.instance_for_test() as instance:
        def tick(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            return evaluate_health(context, AlertSender(), "http://ui")

        assert dg.materialize(build_blade_assets(SOURCE), resources=resources,
                              partition_key=DAY, instance=instance).success
        own.query_arrow(f"ALTER TABLE {source_sql.table(SOURCE)} ADD COLUMN remarks "
                        "STRING")
        assert dg.materialize(build_blade_assets(SOURCE), resources=resources,
                              partition_key=DAY, instance=instance).success
        [alert], cursor = tick(None)
        assert (alert.kind, alert.status, alert.days) == ("check_failure", "firing", DAY)
        assert "check schema_changed of blade/readiness/staged" in alert.title
        assert "ADD_COLUMN remarks string: evolved (on_new_column: evolve)" in alert.cause
        assert "blade schema history" in alert.action

        own.query_arrow(f"ALTER TABLE {source_sql.table(SOURCE)} ADD COLUMN extra INT")
        blocked = dg.materialize(build_blade_assets(strict), resources=resources,
                                 partition_key=DAY, instance=instance, raise_on_error=False)
        assert not blocked.success  # blade_failure_alerts reports it, not the health sensor
        assert tick(cursor.dump())[0] == []
