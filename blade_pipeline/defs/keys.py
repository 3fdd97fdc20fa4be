"""Asset keys and run labels of a source, as every Dagster shell names them."""

from __future__ import annotations

import dagster as dg

from blade_pipeline.config.sources import BladeSource


def run_label(source: BladeSource, days: list[str]) -> str:
    """``maintenance 2024-01-01`` or ``maintenance 2024-01-01...2024-03-31``."""
    return f"{source.data_type} {days[0]}" + (f"...{days[-1]}" if len(days) > 1 else "")


def staged_key(source: BladeSource) -> dg.AssetKey:
    return dg.AssetKey(["blade", source.data_type, "staged"])


def catalog_key(source: BladeSource) -> dg.AssetKey:
    return dg.AssetKey(["blade", source.data_type, "catalog"])
