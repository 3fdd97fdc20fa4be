"""Alerts: a failed run (a failed blocking check included) reaches a person without anyone
watching the UI.

Where alerts go (each off unless configured; both may be on):

* a webhook, ``BLADE_ALERT_WEBHOOK_URL``: a generic JSON body (``BLADE_ALERT_WEBHOOK_FORMAT``
  ``json``, default) or Slack's incoming-webhook format (``slack``). The URL is a secret
  (a Slack webhook's path is its credential): read through ``dg.EnvVar``, never logged;
* email over SMTP: ``BLADE_ALERT_SMTP_HOST`` (and ``_PORT``, ``_FROM``, ``_TO`` — comma
  separated — ``_USER``, ``_PASSWORD``, ``_STARTTLS``).

An alert says what failed (data type, day or days, run and its link), the cause in one line and
what to do. One per failure: a backfill of 100 runs that fails everywhere sends one alert (its
first failed run's; later failures of the same backfill are only counted in the log), since a
run failure sensor is evaluated once per failed run and asks the instance whether an earlier
run of the same backfill failed already (no state of its own to lose).
"""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from blade_pipeline.config.settings import BladeSettings
from blade_pipeline.ops.logs import data_type_of

BACKFILL_TAG = "dagster/backfill"
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run that run retries re-run
RUN_FAILURE_REASON_TAG = "dagster/failure_reason"


@dataclass(frozen=True)
class Alert:
    """One failure (or its recovery, ``status="cleared"``), as a person reads it."""

    title: str
    data_type: str
    days: str
    url: str  # the failed run, or the sensor / schedule / asset check that fails
    cause: str
    action: str
    kind: str = "run_failure"  # check_failure, tick_failure
    status: str = "firing"  # or "cleared": the failure is over
    run_id: str = ""  # a run's alert only

    def as_json(self) -> dict[str, Any]:
        return {"source": "blade_pipeline", "kind": self.kind, "status": self.status,
                "title": self.title, "data_type": self.data_type, "days": self.days,
                "run_id": self.run_id, "url": self.url, "cause": self.cause,
                "action": self.action}

    @property
    def _link_label(self) -> str:
        return f"Run {self.run_id[:8]}" if self.run_id else "Open in Dagster"

    def as_slack(self) -> dict[str, Any]:
        mark = ":large_green_circle:" if self.status == "cleared" else ":red_circle:"
        text = (f"{mark} *{self.title}*\n*Cause:* {self.cause}\n*What to do:* "
                f"{self.action}\n<{self.url}|{self._link_label}>")
        return {"text": f"{self.title}: {self.cause}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}

    def as_email(self, sender: str, recipients: list[str]) -> EmailMessage:
        message = EmailMessage()
        prefix = "[blade] RESOLVED: " if self.status == "cleared" else "[blade] "
        message["Subject"], message["From"] = f"{prefix}{self.title}", sender
        message["To"] = ", ".join(recipients)
        message.set_content(f"{self.title}\n\nCause: {self.cause}\nWhat to do: {self.action}\n"
                            f"Link: {self.url}\nData type: {self.data_type}\n"
                            f"Day(s): {self.days}\n")
        return message


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in {429, 500, 502, 503, 504}
    return isinstance(exc, httpx.TransportError | smtplib.SMTPServerDisconnected | OSError)


class AlertError(Exception):
    """An alert could not be delivered; names the channel, never its secret."""


class AlertSender(dg.ConfigurableResource):
    """Delivers alerts to the webhook and/or the SMTP server configured (nothing if neither)."""

    webhook_url: str | None = Field(default=None, repr=False,
                                    description="BLADE_ALERT_WEBHOOK_URL (a secret)")
    webhook_format: str = Field(default="json", description="json (generic) or slack")
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "blade-pipeline@localhost"
    smtp_to: str = Field(default="", description="comma-separated recipients")
    smtp_user: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_starttls: bool = False
    timeout_s: float = 10.0

    _sent: list[Alert] = PrivateAttr(default_factory=list)

    @classmethod
    def from_env(cls, settings: BladeSettings | None = None) -> AlertSender:
        settings = settings or BladeSettings.load()
        config: dict[str, Any] = {"webhook_format": settings.alert_webhook_format,
                                  "smtp_port": settings.alert_smtp_port,
                                  "smtp_starttls": settings.alert_smtp_starttls}
        if settings.alert_webhook_url:
            config["webhook_url"] = dg.EnvVar("BLADE_ALERT_WEBHOOK_URL")
        if settings.alert_smtp_host:
            config.update(smtp_host=settings.alert_smtp_host, smtp_to=settings.alert_smtp_to)
            if settings.alert_smtp_from:
                config["smtp_from"] = settings.alert_smtp_from
            if settings.alert_smtp_user:
                config["smtp_user"] = settings.alert_smtp_user
            if settings.alert_smtp_password:
                config["smtp_password"] = dg.EnvVar("BLADE_ALERT_SMTP_PASSWORD")
        return cls(**config)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.smtp_host)

    def channels(self) -> list[str]:
        """The channels configured, as a log may name them (no secret)."""
        out = []
        if self.webhook_url:
            out.append(f"webhook ({self.webhook_format})")
        if self.smtp_host:
            out.append(f"email via {self.smtp_host}:{self.smtp_port} to {self.smtp_to}")
        return out

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` to every channel; AlertError naming the channels that failed."""
        failed = []
        if self.webhook_url:
            try:
                self._post(alert)
            except (httpx.HTTPError, OSError) as exc:
                status = (f"HTTP {exc.response.status_code}"
                          if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__)
                failed.append(f"webhook: {status}")  # never the URL: it holds the secret
        if self.smtp_host:
            try:
                self._mail(alert)
            except (smtplib.SMTPException, OSError) as exc:
                failed.append(f"email via {self.smtp_host}:{self.smtp_port}: "
                              f"{type(exc).__name__}")
        if failed:
            raise AlertError(f"alert '{alert.title}' not delivered: {'; '.join(failed)}")
        self._sent.append(alert)

    @retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(3),
           wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
    def _post(self, alert: Alert) -> None:
        body = alert.as_slack() if self.webhook_format == "slack" else alert.as_json()
        httpx.post(self.webhook_url or "", json=body,
                   timeout=self.timeout_s).raise_for_status()

    @retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(3),
           wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
    def _mail(self, alert: Alert) -> None:
        recipients = [r.strip() for r in self.smtp_to.split(",") if r.strip()]
        with smtplib.SMTP(self.smtp_host or "", self.smtp_port, timeout=self.timeout_s) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password or "")
            smtp.send_message(alert.as_email(self.smtp_from, recipients))


# ---- what a failed run says ---------------------------------------------------------------
#: "package.module.ClassName: " before an error's message (Failure, SensorTickError, ...)
_QUALIFIED_CLASS = re.compile(r"^(?:\w+\.)+\w+: ")
RERUN = ("fix the cause, then re-execute the run from failure (Runs -> the run -> Re-execute "
         "-> From failure): an upload resumes from its checkpoints, nothing is sent twice")


def _days(tags: dict[str, str]) -> str:
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    first = tags.get("dagster/asset_partition_range_start")
    return f"{first}...{tags.get('dagster/asset_partition_range_end')}" if first else "-"


def first_line(text: str) -> str:
    """An error's cause in one line, without its qualified class name (at most 500 chars)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _QUALIFIED_CLASS.sub("", line)[:500]


def failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, fallback_cause: str,
                  dagster_url: str) -> Alert | None:
    """The alert of a failed run, or None when an earlier failed run of the same backfill
    already alerted (one alert per backfill)."""
    backfill = run.tags.get(BACKFILL_TAG)
    if backfill and _earlier_failure_of(instance, run, backfill):
        return None
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    data_type = (run.tags.get("blade/data_type")
                 or next((t for f in failures if (t := data_type_of(f.step_key, None))), None)
                 or run.job_name)
    days, url = _days(run.tags), f"{dagster_url.rstrip('/')}/runs/{run.run_id}"
    failed_checks = [r.asset_check_evaluation for r in instance.all_logs(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if r.asset_check_evaluation is not None and not r.asset_check_evaluation.passed
        and r.asset_check_evaluation.blocking]
    title = f"[{data_type}] {run.job_name} failed for {days}" + (
        f" (backfill {backfill}: its later failures are not alerted)" if backfill else "")
    if failed_checks:
        check = failed_checks[0]
        # the staged step's checks are evaluated once per run: the day is in the metadata
        day = check.partition or (str(check.metadata["day"].value)
                                  if "day" in check.metadata else "")
        description = (check.description or "").removeprefix(f"{day}: ")
        return Alert(
            title=title, data_type=data_type, days=days, run_id=run.run_id, url=url,
            kind="check_failure",
            cause=f"blocking check {check.check_name} failed"
                  + (f" for {day}" if day else "") + f": {description}",
            action=f"look at the day's quarantine (lake/{data_type}/quarantine/date=...) and the "
                   "check's metadata; fix the source (or the threshold in sources.yaml), then "
                   "re-run the day")
    if will_retry(instance, run):  # instance run retries will re-execute it
        title += " (retried automatically)"
        action = ("nothing yet: run retries re-execute it from failure (the upload resumes from "
                  "its checkpoints); the retry alerts too if it fails. If it keeps failing, fix "
                  "the cause, then re-execute from failure")
    else:
        action = RERUN
    cause = next((first_line(f.dagster_event.event_specific_data.error.message)
                  for f in failures if f.dagster_event and f.dagster_event.event_specific_data
                  and f.dagster_event.event_specific_data.error), "") or first_line(
        _outside_cause(instance, run) if fallback_cause.startswith(_FAILED_OUTSIDE)
        else fallback_cause) or "the run failed (see its event log)"
    return Alert(title=title, data_type=data_type, days=days, run_id=run.run_id, url=url,
                 cause=cause, action=action)


def will_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether run retries re-execute this failed run.

    Dagster stores the run's failure first and tags it ``dagster/will_retry`` a moment later,
    so a sensor tick in between sees no tag: read the run again, and if it is still untagged
    decide as Dagster's retry daemon does in that case (same function)."""
    tag = run.tags.get(WILL_RETRY_TAG)
    if tag is None and (fresh := instance.get_run_by_id(run.run_id)) is not None:
        run, tag = fresh, fresh.tags.get(WILL_RETRY_TAG)
    if tag is not None:
        return tag == "true"
    if not instance.run_retries_enabled:
        return False
    from dagster._core.events import RunFailureReason
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    reason = run.tags.get(RUN_FAILURE_REASON_TAG)
    return auto_reexecution_should_retry_run(
        instance, run, RunFailureReason(reason) if reason else None)


_FAILED_OUTSIDE = "This run has been marked as failed from outside"  # Dagster's generic text


def _outside_cause(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """A run failed from outside (its worker died): the newest engine event says why (e.g.
    "Run execution process for … unexpectedly exited")."""
    cause = _FAILED_OUTSIDE
    for entry in instance.all_logs(run.run_id, of_type={dg.DagsterEventType.ENGINE_EVENT,
                                                        dg.DagsterEventType.RUN_FAILURE}):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            break  # what follows (e.g. "Retrying the run") is not the cause
        cause = event.message or cause
    return cause


def _earlier_failure_of(instance: dg.DagsterInstance, run: dg.DagsterRun, backfill: str) -> bool:
    """Whether another run of ``backfill`` failed before ``run`` (which then alerted)."""
    records = instance.get_run_records(dg.RunsFilter(
        tags={BACKFILL_TAG: backfill}, statuses=[dg.DagsterRunStatus.FAILURE]))
    mine = next((r for r in records if r.dagster_run.run_id == run.run_id), None)
    key = ((mine.end_time or 0.0), run.run_id) if mine else (float("inf"), run.run_id)
    return any(((r.end_time or 0.0), r.dagster_run.run_id) < key for r in records
               if r.dagster_run.run_id != run.run_id)


#: set on a failed run once its alert is sent: its own run id (a re-execution copies its
#: parent's tags, and must still alert for itself)
ALERTED_TAG = "blade/alerted"


def build_failure_alert_sensor() -> dg.SensorDefinition:
    """``blade_failure_alerts``: every failed run of this code location, as an alert."""

    @dg.run_failure_sensor(
        name="blade_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=BladeSettings().alert_interval_seconds,
        description="Sends an alert (webhook and/or email, see BLADE_ALERT_*) for each failed "
                    "run: data type, days, run link, cause, what to do; one per backfill.")
    def failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSender) -> None:
        if not alerts.enabled:
            context.log.info("no alert channel configured (BLADE_ALERT_WEBHOOK_URL, "
                             "BLADE_ALERT_SMTP_HOST): nothing sent")
            return
        run_id = context.dagster_run.run_id
        stored = context.instance.get_run_by_id(run_id)
        if stored is not None and stored.tags.get(ALERTED_TAG) == run_id:
            # a run can be failed twice (run monitoring and the code server both notice a
            # dead worker): Dagster then emits two failure events; one alert per run
            context.log.info(f"run {run_id} alerted already: not sent again")
            return
        alert = failure_alert(context.instance, context.dagster_run,
                              context.failure_event.message or "",
                              BladeSettings().dagster_url)
        if alert is None:
            context.log.info(f"run {run_id} failed in a backfill that alerted already: not "
                             "sent again")
            return
        alerts.send(alert)  # AlertError fails the tick: the UI shows it, the next tick retries
        context.instance.add_run_tags(run_id, {ALERTED_TAG: run_id})
        context.log.info(f"alert sent to {', '.join(alerts.channels())}: {alert.title}")

    return failure_alerts
