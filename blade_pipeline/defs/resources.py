"""Resources: the warehouse, the catalog, the lake and the alerts, built for the deployment that
``BLADE_DEPLOYMENT`` names (see :mod:`blade_pipeline.config.settings`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from blade_pipeline.config.settings import (
    DEMO_CATALOG_TOKEN,
    DEMO_CATALOG_URL,
    BladeSettings,
    SettingsError,
)
from blade_pipeline.config.sources import default_sources
from blade_pipeline.ops.alerts import AlertSender
from blade_pipeline.sources.csv_drops import CsvDrops
from blade_pipeline.sources.databricks import DatabricksWarehouse
from blade_pipeline.sources.mysql import DEMO_MYSQL_URL, MySQLDatabase
from blade_pipeline.sources.postgres import DEMO_POSTGRES_URL, PostgresDatabase
from blade_pipeline.sources.pushed_rows import PushedRows
from blade_pipeline.storage.catalog import CatalogClient
from blade_pipeline.storage.lake import ParquetLake


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


#: relational source kind -> (its URL variable, resource class, the demo's URL)
_DATABASES: dict[str, tuple[str, type[PostgresDatabase] | type[MySQLDatabase], str]] = {
    "postgres": ("BLADE_POSTGRES_URL", PostgresDatabase, DEMO_POSTGRES_URL),
    "mysql": ("BLADE_MYSQL_URL", MySQLDatabase, DEMO_MYSQL_URL),
}


def database_from_env(kind: str, settings: BladeSettings | None = None
                      ) -> PostgresDatabase | MySQLDatabase:
    """The resource of ``kind: postgres`` / ``mysql`` sources: its URL variable through
    ``dg.EnvVar`` (it may carry a password); the demo's local server when unset in the demo
    deployment."""
    import os

    variable, resource, demo_url = _DATABASES[kind]
    settings = settings or BladeSettings.load()
    if os.environ.get(variable):
        return resource(url=dg.EnvVar(variable))
    if settings.deployment == "prod":
        raise SettingsError(f"BLADE_DEPLOYMENT=prod needs {variable} (a source of "
                            f"sources.yaml has kind {kind})")
    return resource(url=demo_url)


def resources_from_env(settings: BladeSettings | None = None
                       ) -> dict[str, dg.ConfigurableResource]:
    """The resources every BLADE asset and job uses, keyed as they expect them; a
    :class:`~blade_pipeline.config.settings.SettingsError` naming what a ``prod`` deployment
    lacks."""
    settings = settings or BladeSettings.load()
    resources: dict[str, dg.ConfigurableResource] = {
        "warehouse": DatabricksWarehouse.from_env(settings),
        "catalog": catalog_from_env(settings),
        "lake": ParquetLake.from_env(settings),
        "alerts": AlertSender.from_env(settings),
    }
    kinds = {source.kind for source in default_sources()}
    for kind in sorted(kinds & _DATABASES.keys()):
        resources[kind] = database_from_env(kind, settings)
    if "csv" in kinds:
        resources["csv"] = csv_drops_from_env(resources["lake"], settings)
    if "push" in kinds:  # the rows the ingest server's drain keeps in the lake
        resources["pushed"] = PushedRows(lake=resources["lake"])
    return resources


def csv_drops_from_env(lake: ParquetLake, settings: BladeSettings | None = None) -> CsvDrops:
    """The landing root of ``kind: csv`` sources: ``BLADE_LANDING_URI`` (a local path or
    ``s3://bucket/prefix``, on ``BLADE_S3_ENDPOINT`` like the lake); the demo's
    ``.blade/landing`` when unset in the demo deployment."""
    settings = settings or BladeSettings.load()
    endpoint: dict[str, Any] = ({"s3_endpoint": dg.EnvVar("BLADE_S3_ENDPOINT")}
                                if settings.s3_endpoint else {})
    endpoint["s3_max_attempts"] = settings.s3_max_attempts
    if settings.landing_uri:
        return CsvDrops(landing_uri=dg.EnvVar("BLADE_LANDING_URI"), lake=lake, **endpoint)
    if settings.deployment == "prod":
        raise SettingsError("BLADE_DEPLOYMENT=prod needs BLADE_LANDING_URI (a source of "
                            "sources.yaml has kind csv)")
    return CsvDrops(lake=lake, **endpoint)
