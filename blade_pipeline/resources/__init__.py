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


#: Optional integer settings of the catalog client, by environment variable.
CATALOG_TUNING = {"BLADE_CATALOG_BATCH_SIZE": "batch_size",
                  "BLADE_CATALOG_PARALLEL_UPLOADS": "parallel_uploads"}


def catalog_from_env() -> CatalogClient:
    """``BLADE_CATALOG_URL`` + ``BLADE_CATALOG_TOKEN`` (EnvVar); the local mock when unset.
    ``BLADE_CATALOG_BATCH_SIZE`` / ``BLADE_CATALOG_PARALLEL_UPLOADS`` tune the uploads."""
    tuning = {field: _int_env(name) for name, field in CATALOG_TUNING.items()
              if os.environ.get(name)}
    if os.environ.get("BLADE_CATALOG_URL"):
        return CatalogClient(base_url=dg.EnvVar("BLADE_CATALOG_URL"),
                             token=dg.EnvVar("BLADE_CATALOG_TOKEN"), **tuning)
    token: Any = (dg.EnvVar("BLADE_CATALOG_TOKEN") if "BLADE_CATALOG_TOKEN" in os.environ
                  else DEMO_CATALOG_TOKEN)
    return CatalogClient(base_url=DEMO_CATALOG_URL, token=token, **tuning)


def _int_env(name: str) -> int:
    """An integer setting (read eagerly: ``EnvVar.int`` placeholders fail bounds checks)."""
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value[:20]!r}") from None


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources every BLADE asset and job uses, keyed as they expect them."""
    return {
        "warehouse": DatabricksWarehouse.from_env(),
        "catalog": catalog_from_env(),
        "lake": ParquetLake.from_env(),
    }
