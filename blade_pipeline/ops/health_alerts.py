"""``blade_health_alerts``: what fails outside a run reaches a person, and so does its recovery.

Each tick looks at

* the newest completed tick of every running sensor and schedule of this code location (the
  change sensors, the nightly schedules, the freshness sensor, the run failure sensor): a
  ``FAILURE`` starts a problem (e.g. the warehouse is down or refuses the token), a later
  ``SUCCESS`` or ``SKIPPED`` clears it;
* the newest evaluation of every non-blocking asset check (``freshness``, ``reconciled``), per
  partition, and the WARN failures of ``schema_changed`` (a schema change the source's policy
  let through): a failed one starts a problem, a passing one clears it. (Blocking checks that
  fail with ERROR fail their run: ``blade_failure_alerts`` reports those.)

A problem alerts once when it starts (``status: firing``) and once when it clears
(``status: cleared``); what starts or clears in the same tick goes out as one alert (a warehouse
outage fails all four change sensors: one alert). The problems open are kept in the sensor's
cursor, in Dagster's storage, with the storage id of the last check event seen: nothing is
alerted twice across restarts. If delivery fails the tick fails and the cursor stays, so the
next tick sends it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from blade_pipeline.config.settings import BladeSettings
from blade_pipeline.ops.alerts import Alert, AlertSender, first_line

SENSOR_NAME = "blade_health_alerts"
_COMPLETED = [TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE]
_TYPE_IN_NAME = re.compile(r"^blade_([a-z][a-z0-9_]*?)_(?:changes|daily|reconcile)$")
_ACTIONS = {
    "tick_failure": "fix the cause (see the tick's error in the UI); nothing to re-run: a change "
                    "sensor's cursor stays where it was and its first good tick catches up. A "
                    "'cleared' alert follows when a tick succeeds",
    "freshness": "run the day (Materialize the partition, or launch the source's job for it) "
                 "and look at why its nightly run did not succeed",
    "reconciled": "look at the check's metadata (rows and items that do not match), then re-run "
                  "the day: the upload repairs the catalog",
    "schema_changed": "review the change (`blade schema history <type>`): the source's "
                      "schema_policy let it through and the runs go on; `blade schema pin` "
                      "rolls back",
}
#: blocking checks whose WARN failures are alerted here (their ERROR ones fail the run)
_WARN_WATCHED = {"schema_changed"}


@dataclass(frozen=True)
class Problem:
    """Something failing now: a sensor/schedule's ticks, or a check of a day."""

    kind: str  # tick_failure or check_failure
    what: str  # "sensor blade_sortie_changes", "check reconciled of blade/sortie/catalog"
    data_type: str
    day: str
    cause: str
    url: str
    action: str


def _innermost(error) -> str:  # SerializableErrorInfo
    while error.cause is not None:
        error = error.cause
    return first_line(error.message)


# ---- what is failing now ------------------------------------------------------------------
def failing_ticks(context: dg.SensorEvaluationContext, dagster_url: str
                  ) -> tuple[dict[str, Problem], set[str]]:
    """Problems of running instigators whose newest completed tick failed, and the keys of
    those whose newest tick did not (the ones that may clear)."""
    repo = context.repository_def
    assert repo is not None
    defaults = {d.name: (kind, d.default_status) for kind, defs in
                (("sensor", repo.sensor_defs), ("schedule", repo.schedule_defs)) for d in defs}
    location = context.code_location_origin.location_name if context.code_location_origin \
        else None
    failing, healthy = {}, set()
    for state in context.instance.all_instigator_state():
        name = state.instigator_name
        if name not in defaults or name == SENSOR_NAME:
            continue
        origin = state.origin.repository_origin
        if location and origin.code_location_origin.location_name != location:
            continue
        kind, default = defaults[name]
        running = state.status == InstigatorStatus.RUNNING or (
            state.status == InstigatorStatus.DECLARED_IN_CODE
            and default.value == "RUNNING")
        key = f"tick:{name}"
        ticks = context.instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                          limit=1, statuses=_COMPLETED)
        if not running or not ticks or ticks[0].status != TickStatus.FAILURE:
            healthy.add(key)
            continue
        match = _TYPE_IN_NAME.match(name)
        page = (f"{dagster_url}/locations/{origin.repository_name}@"
                f"{origin.code_location_origin.location_name}/{kind}s/{name}")
        failing[key] = Problem(
            kind="tick_failure", what=f"{kind} {name}", data_type=match[1] if match else "-",
            day="-", url=page, action=_ACTIONS["tick_failure"],
            cause=_innermost(ticks[0].error) if ticks[0].error else "the tick failed")
    return failing, healthy


def check_events(context: dg.SensorEvaluationContext, after: int | None, dagster_url: str
                 ) -> tuple[dict[str, Problem], set[str], int | None]:
    """Evaluations of non-blocking checks (and of ``_WARN_WATCHED``) since storage id
    ``after``: problems of the failed ones, keys of the passing ones, and the newest storage
    id seen."""
    repo = context.repository_def
    assert repo is not None
    graph = repo.asset_graph
    keys = [k for k in graph.asset_check_keys
            if not graph.get_check_spec(k).blocking or k.name in _WARN_WATCHED]
    storage = context.instance.event_log_storage
    failing, passing, newest = {}, set(), after
    for info in storage.get_asset_check_partition_info(keys, after_storage_id=after):
        newest = max(newest or 0, info.latest_check_event_storage_id)
        check_key, partition = info.check_key, info.partition_key
        key = f"check:{check_key.to_user_string()}:{partition or ''}"
        if info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED:
            passing.add(key)
        if info.latest_execution_status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        [record] = storage.get_asset_check_execution_history(
            check_key, limit=1, partition_filter=PartitionKeyFilter(key=partition)
        ) or [None]
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if graph.get_check_spec(check_key).blocking and (
                evaluation is None or evaluation.severity != dg.AssetCheckSeverity.WARN):
            continue  # failed its run: blade_failure_alerts said so
        day = partition or (str(evaluation.metadata["day"].value)
                            if evaluation and "day" in evaluation.metadata else "-")
        path = check_key.asset_key.path
        failing[key] = Problem(
            kind="check_failure", what=f"check {check_key.name} of {'/'.join(path)}",
            data_type=path[1] if len(path) > 2 else "-", day=day,
            url=f"{dagster_url}/assets/{'/'.join(path)}?view=checks",
            action=_ACTIONS.get(check_key.name, "look at the check's metadata"),
            cause=(evaluation.description if evaluation and evaluation.description
                   else f"{check_key.name} failed"))
    return failing, passing, newest


# ---- alerts -------------------------------------------------------------------------------
def _grouped(problems: Iterable[Problem], status: str) -> Alert | None:
    problems = sorted(problems, key=lambda p: p.what)
    if not problems:
        return None
    first, more = problems[0], len(problems) - 1
    state = "recovered" if status == "cleared" else "failing"
    what = ", ".join(p.what + (f" for {p.day}" if p.day != "-" else "") for p in problems)
    title = (f"{len(problems)} {state}: {what}" if more else
             f"[{first.data_type}] {what} " + ("recovered" if status == "cleared" else
                                              "is failing"))
    return Alert(
        title=title[:300], kind=first.kind, status=status,
        data_type=",".join(sorted({p.data_type for p in problems})),
        days=",".join(sorted({p.day for p in problems})), url=first.url,
        cause=(f"was: {first.cause}" if status == "cleared" else first.cause)
              + (f" (and {more} more)" if more else ""),
        action="nothing to do" if status == "cleared" else first.action)


@dataclass
class Cursor:
    """The sensor's memory: problems open (alerted, not cleared) and check events seen."""

    open: dict[str, dict]
    after: int | None = None

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        return cls(**json.loads(text)) if text else cls(open={})

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def evaluate_health(context: dg.SensorEvaluationContext, alerts: AlertSender,
                    dagster_url: str) -> tuple[list[Alert], Cursor]:
    """The alerts due now and the cursor after them (sent by the caller)."""
    cursor = Cursor.load(context.cursor)
    ticks_failing, ticks_healthy = failing_ticks(context, dagster_url)
    checks_failing, checks_passing, after = check_events(context, cursor.after, dagster_url)
    failing = {**ticks_failing, **checks_failing}
    started = {k: p for k, p in failing.items() if k not in cursor.open}
    cleared = {k: Problem(**cursor.open[k]) for k in cursor.open
               if k in ticks_healthy or k in checks_passing}
    due = [alert for problems in (
        [p for p in started.values() if p.kind == "tick_failure"],
        [p for p in started.values() if p.kind == "check_failure"]) if (
        alert := _grouped(problems, "firing"))]
    due += [alert for problems in (
        [p for p in cleared.values() if p.kind == "tick_failure"],
        [p for p in cleared.values() if p.kind == "check_failure"]) if (
        alert := _grouped(problems, "cleared"))]
    still_open = {k: v for k, v in cursor.open.items() if k not in cleared}
    still_open.update({k: asdict(p) for k, p in started.items()})
    return due, Cursor(open=still_open, after=after)


def build_health_alert_sensor() -> dg.SensorDefinition:
    """``blade_health_alerts``: failing ticks and failed non-blocking checks, and recoveries."""

    @dg.sensor(
        name=SENSOR_NAME, default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=BladeSettings().alert_interval_seconds,
        description="Alerts (webhook and/or email, see BLADE_ALERT_*) when a sensor or "
                    "schedule's ticks start failing or a freshness/reconciled check fails, and "
                    "again when it clears; one alert per kind and tick.")
    def health_alerts(context: dg.SensorEvaluationContext, alerts: AlertSender
                      ) -> dg.SensorResult:
        due, cursor = evaluate_health(context, alerts, BladeSettings().dagster_url)
        opened = f"{len(cursor.open)} problem(s) open"
        if not due:
            return dg.SensorResult(cursor=cursor.dump(), skip_reason=dg.SkipReason(
                f"nothing started or cleared; {opened}"))
        if not alerts.enabled:
            return dg.SensorResult(cursor=cursor.dump(), skip_reason=dg.SkipReason(
                f"{len(due)} alert(s) not sent: no channel configured (BLADE_ALERT_WEBHOOK_URL, "
                f"BLADE_ALERT_SMTP_HOST); {opened}"))
        for alert in due:
            alerts.send(alert)  # AlertError fails the tick; the cursor stays: resent next tick
            context.log.info(f"alert sent to {', '.join(alerts.channels())}: {alert.title}")
        return dg.SensorResult(cursor=cursor.dump(), skip_reason=dg.SkipReason(
            f"{len(due)} alert(s) sent; {opened}"))

    return health_alerts
