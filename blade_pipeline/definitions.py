"""The Dagster code location: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import dagster as dg

from blade_pipeline.config.sources import default_sources
from blade_pipeline.defs.assets import build_blade_assets, build_source_checks
from blade_pipeline.defs.executors import executor_from_env
from blade_pipeline.defs.jobs import (
    blade_item_job,
    blade_query_job,
    build_partition_job,
    build_reconcile_job,
)
from blade_pipeline.defs.landing import build_landing_job, build_landing_sensor
from blade_pipeline.defs.partitions import daily_partitions
from blade_pipeline.defs.push_sensor import build_drained_sensor
from blade_pipeline.defs.resources import resources_from_env
from blade_pipeline.defs.schedules import build_daily_schedule, build_reconcile_schedule
from blade_pipeline.defs.sensors import build_change_sensor
from blade_pipeline.ops.alerts import build_failure_alert_sensor
from blade_pipeline.ops.freshness import CHECK_NAME as FRESHNESS
from blade_pipeline.ops.freshness import build_freshness_sensor
from blade_pipeline.ops.health_alerts import build_health_alert_sensor


def build_definitions() -> dg.Definitions:
    """Definitions for every source in sources.yaml (disabled ones start with their sensor
    and schedule off)."""
    assets, checks, jobs, sensors, schedules = [], [], [blade_query_job, blade_item_job], [], []
    freshness = []
    for source in default_sources():
        assets += build_blade_assets(source)  # (their blocking checks run in the staged step)
        # reconciled (also in `job`, after the upload); freshness unless disabled (never due)
        for check in build_source_checks(source):
            is_freshness = {k.name for k in check.check_keys} == {FRESHNESS}
            (freshness if is_freshness else checks).append(check)
        job = build_partition_job(source)
        reconcile_job = build_reconcile_job(source)
        jobs += [job, reconcile_job]
        if source.kind == "push":  # log-driven: the drain's days, no nightly re-run
            sensors.append(build_drained_sensor(source, job, daily_partitions(source)))
        elif source.kind == "csv":  # file-driven: a landing sensor, no nightly re-run
            landing_job = build_landing_job(source)
            jobs.append(landing_job)
            sensors.append(build_landing_sensor(source, landing_job, job,
                                                daily_partitions(source)))
        else:
            sensors.append(build_change_sensor(source, job, daily_partitions(source)))
            schedules.append(build_daily_schedule(source, job))
        schedules.append(build_reconcile_schedule(source, reconcile_job))
    # BLADE_EXECUTOR: steps in the run's process (default), in child processes, or on Celery
    # workers (blade_pipeline/defs/executors.py).
    checks += freshness
    sensors += [build_failure_alert_sensor(), build_health_alert_sensor()]
    if freshness:
        sensors.append(build_freshness_sensor(freshness))
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors,
                          schedules=schedules, resources=resources_from_env(),
                          executor=executor_from_env())


defs = build_definitions()
