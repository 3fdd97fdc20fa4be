"""Resources: the warehouse, the catalog, the lake and the alerts, built for the deployment that
``BLADE_DEPLOYMENT`` names (see :mod:`blade_pipeline.settings`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from blade_pipeline.alerts import AlertSender
from blade_pipeline.resources.catalog import CatalogClient
from blade_pipeline.resources.lake import ParquetLake
from blade_pipeline.resources.mysql import DEMO_MYSQL_URL, MySQLDatabase
from blade_pipeline.resources.postgres import DEMO_POSTGRES_URL, PostgresDatabase
from blade_pipeline.resources.warehouse import DatabricksWarehouse
from blade_pipeline.settings import (
    DEMO_CATALOG_TOKEN,
    DEMO_CATALOG_URL,
    BladeSettings,
    SettingsError,
)
from blade_pipeline.sources import default_sources


def catalog_from_env(settings: BladeSettings | None = None) -> CatalogClient:
    """``BLADE_CATALOG_URL`` + ``BLADE_CATALOG_TOKEN`` (EnvVar); in the demo deployment the
    local mock when unset. ``BLADE_CATALOG_BATCH_SIZE`` / ``BLADE_CATALOG_PARALLEL_UPLOADS``
    tune the uploads."""
    settings = settings or BladeSettings.load()
    tuning = {field: value for field, value in (
        ("batch_size", settings.catalog_batch_size),
        ("parallel_uploads", settings.catalog_parallel_uploads)) if value is not None}
    if settings.catalog_url:
        return CatalogClient(base_url=dg.EnvVar("BLADE_CATALOG_URL"),
                             token=dg.EnvVar("BLADE_CATALOG_TOKEN"), **tuning)
    token: Any = dg.EnvVar("BLADE_CATALOG_TOKEN") if settings.catalog_token \
        else DEMO_CATALOG_TOKEN
    return CatalogClient(base_url=DEMO_CATALOG_URL, token=token, **tuning)


def postgres_from_env(settings: BladeSettings | None = None) -> PostgresDatabase:
    """``BLADE_POSTGRES_URL`` (EnvVar: it may carry a password) for ``kind: postgres``
    sources; the demo's local database when unset in the demo deployment."""
    import os

    settings = settings or BladeSettings.load()
    if os.environ.get("BLADE_POSTGRES_URL"):
        return PostgresDatabase(url=dg.EnvVar("BLADE_POSTGRES_URL"))
    if settings.deployment == "prod":
        raise SettingsError("BLADE_DEPLOYMENT=prod needs BLADE_POSTGRES_URL (a source of "
                            "sources.yaml has kind postgres)")
    return PostgresDatabase(url=DEMO_POSTGRES_URL)


def mysql_from_env(settings: BladeSettings | None = None) -> MySQLDatabase:
    """``BLADE_MYSQL_URL`` (EnvVar) for ``kind: mysql`` sources; the demo's local MariaDB when
    unset in the demo deployment."""
    import os

    settings = settings or BladeSettings.load()
    if os.environ.get("BLADE_MYSQL_URL"):
        return MySQLDatabase(url=dg.EnvVar("BLADE_MYSQL_URL"))
    if settings.deployment == "prod":
        raise SettingsError("BLADE_DEPLOYMENT=prod needs BLADE_MYSQL_URL (a source of "
                            "sources.yaml has kind mysql)")
    return MySQLDatabase(url=DEMO_MYSQL_URL)


def resources_from_env(settings: BladeSettings | None = None
                       ) -> dict[str, dg.ConfigurableResource]:
    """The resources every BLADE asset and job uses, keyed as they expect them; a
    :class:`~blade_pipeline.settings.SettingsError` naming what a ``prod`` deployment lacks."""
    settings = settings or BladeSettings.load()
    resources: dict[str, dg.ConfigurableResource] = {
        "warehouse": DatabricksWarehouse.from_env(settings),
        "catalog": catalog_from_env(settings),
        "lake": ParquetLake.from_env(settings),
        "alerts": AlertSender.from_env(settings),
    }
    kinds = {source.kind for source in default_sources()}
    if "postgres" in kinds:
        resources["postgres"] = postgres_from_env(settings)
    if "mysql" in kinds:
        resources["mysql"] = mysql_from_env(settings)
    return resources
