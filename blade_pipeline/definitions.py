"""The Dagster code location: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import dagster as dg

from blade_pipeline.resources.warehouse import DatabricksWarehouse

defs = dg.Definitions(
    resources={
        "warehouse": DatabricksWarehouse.from_env(),
    },
)
