"""Case 8c-8f: each kind of schema change under each ``schema_policy``, made with
DDL through the connector on a running mock warehouse, met by real Dagster runs; accept and pin
through the ``blade schema`` CLI.

Each *lane* is one source policy with its own lake (its schema history) and catalog: every lane
stages and uploads the day before the change, then meets the same change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
import pytest

from blade_pipeline.cli import main
from blade_pipeline.config.sources import BladeSource, SchemaPolicy, source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.steps.schema_versions import SchemaHistory
from blade_pipeline_tests.conftest import WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.faults.conftest import (
    ROWS,
    WAREHOUSE_ARGS,
    catalog_items,
    checks,
    failure_messages,
    make_resources,
    materialization,
    materialized,
    quarantine,
    run,
    staged_hashes,
)


@pytest.fixture(scope="module")
def policy_warehouse(start_warehouse):
    """A warehouse of its own: these cases alter its tables."""
    return start_warehouse(ROWS, *WAREHOUSE_ARGS)


@dataclass
class Lane:
    source: BladeSource
    res: dict[str, Any]

    @property
    def history(self) -> SchemaHistory:
        return SchemaHistory(self.res["lake"], self.source.data_type)

    def items(self) -> dict[str, dict[str, Any]]:
        return {i["item_id"]: i for i in catalog_items(self.res["catalog"],
                                                       self.source.catalog_data_source)}


@pytest.fixture
def lanes(policy_warehouse, start_catalog, tmp_path, dagster_instance, recorded):
    """Factory: a lane per policy, each with the day staged and uploaded before the change."""

    def make(data_type: str, **policy: str) -> Lane:
        name = "-".join(f"{k}={v}" for k, v in policy.items()) or "default"
        source = source_for(data_type).model_copy(
            update={"schema_policy": SchemaPolicy(**policy)})
        lane = Lane(source, make_resources(policy_warehouse, start_catalog(),
                                           tmp_path / data_type / name))
        first = run(source, lane.res, dagster_instance, recorded)
        assert first.success, failure_messages(first)
        assert checks(first)["schema_changed"].passed
        return lane

    return make


def sql(lane: Lane, *statements: str) -> None:
    warehouse: DatabricksWarehouse = lane.res["warehouse"]
    for statement in statements:
        warehouse.query_arrow(statement)


def table(source: BladeSource) -> str:
    return source_sql.table(source)


def schema_check(result):
    return checks(result)["schema_changed"]


def cli(monkeypatch, lane: Lane, *args: str) -> int:
    monkeypatch.setenv("BLADE_LAKE_URI", lane.res["lake"].uri)
    return main(["schema", *args])


@pytest.mark.slow
def test_8c_a_new_column_evolves_is_ignored_or_blocks_until_accepted(
        lanes, dagster_instance, recorded, monkeypatch, capsys, pg_dagster_home):
    evolve, ignore, fail = (lanes("maintenance", on_new_column=p)
                            for p in ("evolve", "ignore", "fail"))
    before = {id(lane): lane.items() for lane in (evolve, ignore, fail)}
    hashes = staged_hashes(ignore.res["lake"], "maintenance")
    sql(evolve, f"ALTER TABLE {table(evolve.source)} ADD COLUMN remarks STRING",
        f"UPDATE {table(evolve.source)} SET remarks = 'checked'")
    change = "ADD_COLUMN remarks string"

    # evolve: carried into every item (so its hash), WARN once, the new version adopted
    result = run(evolve.source, evolve.res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    check = schema_check(result)
    assert not check.passed and check.severity.value == "WARN"
    assert f"{change}: evolved (on_new_column: evolve)" in check.description
    assert materialization(result, staged_key(evolve.source))["schema_expected_version"] == 2
    assert evolve.history.expected_number() == 2
    uploaded = materialization(result, catalog_key(evolve.source))
    assert uploaded["updated"] == len(before[id(evolve)]) and uploaded["created"] == 0
    items = evolve.items()
    assert all(i["item"]["data"]["remarks"] == "checked" for i in items.values())
    assert {i["item"]["metadata"]["schema_version"] for i in items.values()} == {2}
    again = run(evolve.source, evolve.res, dagster_instance, recorded)
    assert schema_check(again).passed  # it warned on the run that met it, not on every run

    # ignore: left out before hashing, nothing churns, the check passes and names it
    result = run(ignore.source, ignore.res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    check = schema_check(result)
    assert check.passed and change in check.description
    assert check.metadata["ignored_changes"].value == [
        f"{change}: ignored (on_new_column: ignore)"]
    assert staged_hashes(ignore.res["lake"], "maintenance") == hashes
    uploaded = materialization(result, catalog_key(ignore.source))
    assert (uploaded["created"], uploaded["updated"]) == (0, 0)
    assert "remarks" not in next(iter(ignore.items().values()))["item"]["data"]
    assert ignore.history.expected_number() == 1  # still v1: remarks stays left out

    # fail: staged, not uploaded, the change named; accepted after review, the catalog step
    # alone then uploads the staged day
    result = run(fail.source, fail.res, dagster_instance, recorded)
    assert not result.success
    check = schema_check(result)
    assert not check.passed and check.severity.value == "ERROR"
    assert f"{change}: blocked (on_new_column: fail)" in check.description
    assert "blade schema accept maintenance" in check.description
    assert not materialized(result, catalog_key(fail.source))
    assert fail.items() == before[id(fail)]
    assert fail.history.expected_number() == 1

    monkeypatch.setenv("DAGSTER_HOME", str(pg_dagster_home))
    assert cli(monkeypatch, fail, "accept", "maintenance", "--reason", "remarks reviewed") == 0
    out = capsys.readouterr().out
    assert "maintenance: schema v2 is now the expected version (was v1); accept by" in out
    assert f"remarks reviewed; changes from v1: {change}" in out
    [act] = dagster_instance.fetch_observations(staged_key(fail.source), limit=1).records
    meta = act.asset_observation.metadata
    assert meta["schema_act"].value == "accept" and meta["schema_expected_version"].value == 2
    result = run(fail.source, fail.res, dagster_instance, recorded,
                 selection=[catalog_key(fail.source)])
    assert result.success, failure_messages(result)
    assert materialization(result, catalog_key(fail.source))["updated"] == len(before[id(fail)])

    # pin: roll the evolve lane back to v1; runs check against it and adopt nothing until
    # the next accept
    assert cli(monkeypatch, evolve, "pin", "maintenance", "v1", "--reason", "roll back") == 0
    result = run(evolve.source, evolve.res, dagster_instance, recorded)
    check = schema_check(result)
    assert not check.passed and check.severity.value == "WARN"
    assert "schema v2 against the expected v1" in check.description
    assert evolve.history.expected().pinned and evolve.history.expected_number() == 1
    capsys.readouterr()
    assert cli(monkeypatch, evolve, "history", "maintenance") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("*v1 ") and lines[1].startswith(" v2 ")
    assert "* expected: v1 (pinned)" in lines
    assert [line.split()[1:3] for line in lines[3:]] == [["adopt", "v2"], ["pin", "v1"]]
    assert cli(monkeypatch, evolve, "accept", "maintenance") == 0
    assert schema_check(run(evolve.source, evolve.res, dagster_instance, recorded)).passed


@pytest.mark.slow
def test_8d_a_dropped_column_is_allowed_only_when_optional(
        lanes, dagster_instance, recorded):
    allow, fail = lanes("sortie", on_dropped_column="allow"), lanes("sortie")
    required = lanes("readiness", on_dropped_column="allow")
    before = allow.items()
    sql(allow, f"ALTER TABLE {table(allow.source)} DROP COLUMN base",
        f"ALTER TABLE {table(required.source)} DROP COLUMN tail_number")

    result = run(allow.source, allow.res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    check = schema_check(result)
    assert not check.passed and check.severity.value == "WARN"
    assert "DROP_COLUMN base (was string): allowed (on_dropped_column: allow)" in \
        check.description
    items = allow.items()
    assert items.keys() == before.keys()
    assert all(i["item"]["data"]["base"] is None for i in items.values())

    result = run(fail.source, fail.res, dagster_instance, recorded)
    assert not result.success
    check = schema_check(result)
    assert check.severity.value == "ERROR" and "blocked (on_dropped_column: fail)" in \
        check.description
    assert checks(result)["schema_conforms"].passed  # the rows fit: base reads as NULL
    assert not materialized(result, catalog_key(fail.source))

    result = run(required.source, required.res, dagster_instance, recorded)
    assert not result.success
    check = schema_check(result)
    assert "DROP_COLUMN tail_number (was string): blocked (the model requires it)" in \
        check.description
    assert "required column 'tail_number' is missing" in \
        checks(result)["schema_conforms"].description


@pytest.mark.slow
def test_8e_a_widened_column_goes_on_rescuing_what_does_not_fit_and_narrowing_blocks(
        lanes, policy_warehouse, dagster_instance, recorded, monkeypatch, capsys):
    widen, fail = lanes("supply", on_type_change="widen"), lanes("supply")
    before, hashes = widen.items(), staged_hashes(widen.res["lake"], "supply")
    big = sorted(before)[0]
    key = big.removeprefix(f"{widen.source.item_id_prefix}-")
    # as an operator of the demo would: `blade sql` on the configured warehouse
    monkeypatch.setenv("BLADE_WAREHOUSE_URL", warehouse_url(policy_warehouse))
    monkeypatch.setenv("DATABRICKS_TOKEN", WAREHOUSE_TOKEN)
    assert main(["sql", f"ALTER TABLE {table(widen.source)} ALTER COLUMN quantity_on_hand "
                        "TYPE BIGINT"]) == 0
    assert main(["sql", f"UPDATE {table(widen.source)} SET quantity_on_hand = 3000000000 "
                        f"WHERE part_number = '{key}'"]) == 0
    assert "num_affected_rows" in capsys.readouterr().out
    change = "CHANGE_TYPE quantity_on_hand int -> bigint (widening)"

    result = run(widen.source, widen.res, dagster_instance, recorded)
    assert result.success, failure_messages(result)
    check = schema_check(result)
    assert not check.passed and check.severity.value == "WARN"
    assert f"{change}: widened (on_type_change: widen)" in check.description
    # the value that does not fit the model's int is rescued: its row quarantined, named
    rows = quarantine(widen.res["lake"], "supply")
    rescued = rows.filter(pc.equal(rows["part_number"], key))
    assert rescued["quantity_on_hand"].to_pylist() == [3000000000]
    assert rescued["_reason"].to_pylist() == [
        "quantity_on_hand: does not fit int (schema v1; the source sends bigint, v2) "
        "(got 3000000000)"]
    # every other row fits: cast back to int, same items, same hashes, nothing churns
    assert staged_hashes(widen.res["lake"], "supply") == {
        k: v for k, v in hashes.items() if k != big}
    uploaded = materialization(result, catalog_key(widen.source))
    assert (uploaded["created"], uploaded["updated"]) == (0, 0)
    assert widen.history.expected_number() == 2

    result = run(fail.source, fail.res, dagster_instance, recorded)
    assert not result.success
    assert f"{change}: blocked (on_type_change: fail)" in schema_check(result).description
    assert not materialized(result, catalog_key(fail.source))

    # narrowing blocks under widen too
    sql(widen, f"UPDATE {table(widen.source)} SET quantity_on_hand = 7 "
               f"WHERE part_number = '{key}'",
        f"ALTER TABLE {table(widen.source)} ALTER COLUMN quantity_on_hand TYPE SMALLINT")
    result = run(widen.source, widen.res, dagster_instance, recorded)
    assert not result.success
    assert ("CHANGE_TYPE quantity_on_hand bigint -> smallint (narrowing): blocked (narrowing)"
            in schema_check(result).description)
    assert widen.history.expected_number() == 2
