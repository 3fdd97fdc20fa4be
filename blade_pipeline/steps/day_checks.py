"""The staged partition's blocking checks as plain functions of its footer (no Dagster here).

The asset checks report them per day, and the catalog asset applies the same functions to
each day of its run before uploading it, so a failed day blocks its own upload and no other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blade_pipeline.config.pandera_models import required_columns
from blade_pipeline.config.sources import BladeSource

NOT_STAGED = "no staged partition found"


@dataclass(frozen=True)
class CheckOutcome:
    """One check of one day."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    severity: str = "ERROR"  # WARN: reported, never blocks the upload

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == "ERROR"


def schema_conforms(source: BladeSource, footer: dict[str, Any] | None,
                    expected_version: int | None = None) -> CheckOutcome:
    """Every column the Pandera model requires is there with its type (added ones allowed)."""
    if footer is None:
        return CheckOutcome("schema_conforms", False, NOT_STAGED)
    errors = footer.get("schema_errors", [])
    return CheckOutcome(
        "schema_conforms", not errors,
        "; ".join(errors) if errors else "all required columns present",
        {"schema_errors": errors, "extra_columns": footer.get("extra_columns", []),
         "required_columns": required_columns(source.model_name)})


def allowed_invalid_rows(source: BladeSource, extracted: int) -> int:
    """How many quarantined rows a day of ``extracted`` rows may have and still pass:
    max(invalid_rows_allowed, max_invalid_fraction x extracted), rounded down."""
    return max(source.invalid_rows_allowed, int(source.max_invalid_fraction * extracted))


def invalid_fraction(source: BladeSource, footer: dict[str, Any] | None,
                     expected_version: int | None = None) -> CheckOutcome:
    """Quarantined rows within the source's allowance (see :func:`allowed_invalid_rows`)."""
    if footer is None:
        return CheckOutcome("invalid_fraction", False, NOT_STAGED)
    extracted, quarantined = footer.get("extracted", 0), footer.get("quarantined", 0)
    fraction = quarantined / extracted if extracted else 0.0
    allowed = allowed_invalid_rows(source, extracted)
    return CheckOutcome(
        "invalid_fraction", quarantined <= allowed,
        f"{quarantined} of {extracted} rows quarantined ({fraction:.2%}; allowed: {allowed} = "
        f"max({source.invalid_rows_allowed} rows, {source.max_invalid_fraction:.2%}))",
        {"invalid_fraction": round(fraction, 6), "rows_quarantined": quarantined,
         "rows_extracted": extracted, "rows_allowed": allowed,
         "quarantine_reasons": dict(list(footer.get("reasons", {}).items())[:10]),
         "threshold": source.max_invalid_fraction,
         "invalid_rows_allowed": source.invalid_rows_allowed})


def schema_changed(source: BladeSource, footer: dict[str, Any] | None,
                   expected_version: int | None = None) -> CheckOutcome:
    """The schema the day was read in, against the expected version under the source's
    ``schema_policy``: ERROR when the policy blocks a change (unless that version has been
    accepted since: ``expected_version`` is the expected one now), WARN when it lets one
    through, passed otherwise (ignored columns listed)."""
    if footer is None:
        return CheckOutcome("schema_changed", False, NOT_STAGED)
    schema = footer.get("schema") or {}
    version, expected = schema.get("version"), schema.get("expected")
    blocked, warned = schema.get("blocked", []), schema.get("warned", [])
    ignored = schema.get("ignored", [])
    meta = {"schema_version": version, "expected_version": expected,
            "pinned": schema.get("pinned", False), "blocked_changes": blocked,
            "allowed_changes": warned, "ignored_changes": ignored,
            "policy": source.schema_policy.model_dump()}
    name = "schema_changed"
    if version is None:
        return CheckOutcome(name, True, "no rows read: no schema to compare", meta)
    if expected is None or version == expected:
        return CheckOutcome(name, True, f"schema v{version} is the expected one"
                            + (f"; ignored: {'; '.join(ignored)}" if ignored else ""), meta)
    since = f"schema v{version} against the expected v{expected}"
    if blocked and version == expected_version:
        return CheckOutcome(name, True, f"{since}: v{version} was accepted since this day "
                            f"was staged ({'; '.join(blocked)})", meta)
    if blocked:
        return CheckOutcome(
            name, False, f"{since}: {'; '.join(blocked + warned)}. After review, "
            f"`blade schema accept {source.data_type}` makes v{version} the expected "
            "version; then re-run the day", meta)
    if warned:
        return CheckOutcome(name, False, f"{since} (allowed by the policy): "
                            f"{'; '.join(warned + ignored)}", meta, severity="WARN")
    return CheckOutcome(name, True, f"{since}: ignored: {'; '.join(ignored)}", meta)


CHECKS = (schema_conforms, invalid_fraction, schema_changed)


def failed_checks(source: BladeSource, footer: dict[str, Any] | None,
                  expected_version: int | None = None) -> list[CheckOutcome]:
    """The blocking checks a staged day fails with ERROR (empty: the day may be uploaded);
    ``expected_version``: the source's expected schema version now."""
    return [outcome for check in CHECKS
            if (outcome := check(source, footer, expected_version)).blocks]
