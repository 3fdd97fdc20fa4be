"""Freshness checks and the health alert sensor, in this process on Dagster's ephemeral
instance: a day that is late fails ``freshness`` (staged WARN, catalog ERROR), the health sensor
alerts once, and once more ("cleared") when the day arrives. The clock is Dagster's (frozen
here at the day after DAY, 04:00 UTC: DAY is due at 03:00)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.test_utils import freeze_time

from blade_pipeline.config.sources import source_for
from blade_pipeline.definitions import defs
from blade_pipeline.defs.assets import build_blade_assets
from blade_pipeline.ops.alerts import AlertSender
from blade_pipeline.ops.freshness import build_freshness_check, due_day, latest_deadline
from blade_pipeline.ops.health_alerts import evaluate_health
from blade_pipeline_tests.fast.conftest import DAY

SOURCE = source_for("sortie")
AFTER_DEADLINE = dt.datetime.fromisoformat(DAY).replace(tzinfo=dt.UTC) + dt.timedelta(
    days=1, hours=4)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()
            if e.check_name == "freshness"}


def health_tick(instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return evaluate_health(context, AlertSender(), "http://ui")


def test_the_due_day_is_the_day_before_the_latest_deadline():
    at = dt.datetime(2026, 6, 24, 2, 59, tzinfo=dt.UTC)
    assert due_day(SOURCE, at) == dt.date(2026, 6, 22)  # 06-23 is not due before 03:00
    assert due_day(SOURCE, at + dt.timedelta(minutes=1)) == dt.date(2026, 6, 23)
    assert latest_deadline(SOURCE, at).isoformat() == "2026-06-23T03:00:00+00:00"


def test_a_late_day_fails_freshness_alerts_once_and_clears_when_it_arrives(resources):
    assets, check = build_blade_assets(SOURCE), build_freshness_check(SOURCE)
    with dg.instance_for_test() as instance, freeze_time(AFTER_DEADLINE):
        late = dg.materialize([*assets, check], selection=dg.AssetSelection.checks(check),
                              resources=resources, instance=instance)
        found = evaluations(late)
        assert set(found) == {"blade/sortie/staged", "blade/sortie/catalog"}
        assert not any(e.passed for e in found.values())
        catalog = found["blade/sortie/catalog"]
        assert catalog.severity == dg.AssetCheckSeverity.ERROR
        assert found["blade/sortie/staged"].severity == dg.AssetCheckSeverity.WARN
        assert f"[sortie] {DAY} is late: not uploaded to the catalog by " in catalog.description
        assert catalog.metadata["dagster/overdue_seconds"].value == 3600

        [alert], cursor = health_tick(instance, None)
        assert (alert.kind, alert.status, alert.days) == ("check_failure", "firing", DAY)
        assert "check freshness of blade/sortie/catalog" in alert.title
        assert "check freshness of blade/sortie/staged" in alert.title
        assert alert.url == "http://ui/assets/blade/sortie/catalog?view=checks"
        assert "run the day" in alert.action
        again, cursor = health_tick(instance, cursor.dump())
        assert again == [], "an open problem alerted twice"

        arrived = dg.materialize([*assets, check], partition_key=DAY, resources=resources,
                                 instance=instance)  # the day's run evaluates the check too
        assert all(e.passed for e in evaluations(arrived).values())
        [cleared], cursor = health_tick(instance, cursor.dump())
        assert (cleared.status, cleared.kind) == ("cleared", "check_failure")
        assert cleared.cause.startswith(f"was: [sortie] {DAY} is late")
        assert cursor.open == {}
        assert health_tick(instance, cursor.dump())[0] == []
