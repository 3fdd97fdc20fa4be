"""The Dagster code location: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import dagster as dg

from blade_pipeline.assets import build_blade_assets
from blade_pipeline.resources import resources_from_env
from blade_pipeline.sources import default_sources


def build_definitions() -> dg.Definitions:
    """Definitions for every enabled or disabled source in sources.yaml."""
    assets, checks = [], []
    for source in default_sources():
        for definition in build_blade_assets(source):
            (checks if isinstance(definition, dg.AssetChecksDefinition) else assets).append(
                definition)
    # One process per run: a partition's steps run in sequence anyway (staged -> checks ->
    # catalog) and this saves a Python start-up per step. Scale out with more concurrent runs
    # (QueuedRunCoordinator) or switch to dg.multiprocess_executor (see README).
    return dg.Definitions(assets=assets, asset_checks=checks, resources=resources_from_env(),
                          executor=dg.in_process_executor)


defs = build_definitions()
