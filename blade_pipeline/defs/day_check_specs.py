"""The staged asset's blocking checks in Dagster: their specs and the results of a run.

The checks (``day_checks``) run inside the staged step, on the footers it has just written:
no step, no lake read and no event per check and day. Each check is evaluated once per run:

* a one-day run: its result for that day (``day`` in the metadata); Dagster blocks the
  catalog step when it fails with ERROR;
* a range run: one result over the range. It passes when every day passes; otherwise it
  names the failing days with each day's reason (``failed_days``), and it does not stop the
  run (``blocking=False`` on the evaluation): the catalog step applies the same checks per day
  and uploads the days that pass, then fails naming the others, which the partitions view
  shows red.

Why not one evaluation per day and check: on a 730-day range that is 2,190 instance events
(each a write to the Dagster instance) against 3 here; the per-day status stays visible as the
catalog asset's partitions, and each failing day's reason is in the evaluation and in the
catalog step's failure. (Partitioned checks evaluated only for failing days were weighed: the
days left without an evaluation would read "skipped", or "execution failed" when another day
fails the run.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.defs.metadata import check_metadata
from blade_pipeline.steps import day_checks
from blade_pipeline.steps.day_checks import CheckOutcome

#: failing days named in an evaluation's description (all of them are in ``failed_days``)
DAYS_IN_DESCRIPTION = 20
#: failing days whose figures an evaluation's metadata holds (the event stays small)
DAYS_IN_METADATA = 200


def check_specs(source: BladeSource, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The blocking checks of a source's staged asset."""
    policy = ", ".join(f"{k}: {v}" for k, v in source.schema_policy.model_dump().items())
    descriptions = {
        "schema_conforms": "The source's rows carry every column the Pandera model requires, "
                           "with its type (added columns are allowed).",
        "invalid_fraction": f"Quarantined rows are at most max({source.invalid_rows_allowed} "
                            f"rows, {source.max_invalid_fraction:.1%} of the extracted rows) "
                            "per day.",
        "schema_changed": "The schema each day was read in against the expected version, "
                          f"under the source's schema_policy ({policy}): ERROR (blocks the "
                          "upload) when the policy blocks a change, WARN when it lets one "
                          "through; `blade schema accept` / `pin` choose the expected version.",
    }
    return [dg.AssetCheckSpec(name=check.__name__, asset=asset_key, blocking=True,
                              description=descriptions[check.__name__] + " One evaluation per "
                              "run; a range run's failing days are listed in its metadata.")
            for check in day_checks.CHECKS]


def day_result(day: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """A one-day run's result of one check."""
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity), description=f"{day}: "
        f"{outcome.description}", metadata={"day": day, **check_metadata(outcome)})


def range_summary(name: str, outcomes: dict[str, CheckOutcome]) -> dict[str, Any]:
    """One check over a range of days: passed, severity, description and metadata."""
    failing = {day: o for day, o in outcomes.items() if not o.passed}
    days = sorted(outcomes)
    span = f"{days[0]}...{days[-1]}" if len(days) > 1 else days[0]
    if not failing:
        return {"passed": True, "severity": dg.AssetCheckSeverity.ERROR,
                "description": f"{span}: all {len(days)} days pass",
                "metadata": {"days_checked": len(days), "days_failed": 0, "day": span}}
    blocking = any(o.blocks for o in failing.values())
    listed = "; ".join(f"{day}: {o.description}"
                       for day, o in sorted(failing.items())[:DAYS_IN_DESCRIPTION])
    shown = dict(sorted(failing.items())[:DAYS_IN_METADATA])
    return {
        "passed": False,
        "severity": dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        "description": f"{span}: {len(failing)} of {len(days)} days fail {name}"
                       + (" (they are not uploaded)" if blocking else "")
                       + f": {listed}" + (" ..." if len(failing) > DAYS_IN_DESCRIPTION else ""),
        "metadata": {
            "days_checked": len(days), "days_failed": len(failing),
            "day": ",".join(sorted(failing)),
            "failed_days": dg.MetadataValue.json({d: o.description for d, o in shown.items()}),
            "failed_day_figures": dg.MetadataValue.json({d: o.metadata for d, o in shown.items()}),
        }}


def range_results(context: dg.AssetExecutionContext, asset_key: dg.AssetKey,
                  outcomes: dict[str, list[CheckOutcome]]) -> Iterator[Any]:
    """A range run's evaluations, one per check. A failing one is yielded as a non-blocking
    evaluation (with the check's output) so that the catalog step still uploads the good
    days; it leaves out the failing ones itself (``day_checks.failed_checks``)."""
    by_check: dict[str, dict[str, CheckOutcome]] = {}
    for day, day_outcomes in outcomes.items():
        for outcome in day_outcomes:
            by_check.setdefault(outcome.name, {})[day] = outcome
    output_names = {spec.key.name: name
                    for name, spec in context.assets_def.check_specs_by_output_name.items()}
    for name, per_day in by_check.items():
        summary = range_summary(name, per_day)
        if summary["passed"]:
            yield dg.AssetCheckResult(check_name=name, **summary)
            continue
        yield dg.Output(None, output_name=output_names[name])
        yield dg.AssetCheckEvaluation(asset_key=asset_key, check_name=name, blocking=False,
                                      **summary)
