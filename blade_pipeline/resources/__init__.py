"""Resources: the warehouse, the catalog and the lake, configured from the environment."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from blade_pipeline.resources.catalog import CatalogClient
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.resources.warehouse import DatabricksWarehouse

DEMO_CATALOG_URL = "http://127.0.0.1:8080"
DEMO_CATALOG_TOKEN = "dev-catalog-token"  # the mock catalog's default; not a secret


def catalog_from_env() -> CatalogClient:
    """``BLADE_CATALOG_URL`` + ``BLADE_CATALOG_TOKEN`` (EnvVar); the local mock when unset."""
    if os.environ.get("BLADE_CATALOG_URL"):
        return CatalogClient(base_url=dg.EnvVar("BLADE_CATALOG_URL"),
                             token=dg.EnvVar("BLADE_CATALOG_TOKEN"))
    token: Any = (dg.EnvVar("BLADE_CATALOG_TOKEN") if "BLADE_CATALOG_TOKEN" in os.environ
                  else DEMO_CATALOG_TOKEN)
    return CatalogClient(base_url=DEMO_CATALOG_URL, token=token)


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources every BLADE asset and job uses, keyed as they expect them."""
    return {
        "warehouse": DatabricksWarehouse.from_env(),
        "catalog": catalog_from_env(),
        "lake": ParquetLake.from_env(),
    }
