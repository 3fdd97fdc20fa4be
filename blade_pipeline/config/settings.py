"""Every environment setting of the pipeline, read and checked in one place (pydantic-settings).

``BLADE_DEPLOYMENT`` names the deployment the resources are built for:

* ``demo`` (default): the local mock services of ``make demo`` on 127.0.0.1 with their demo
  tokens, unless a variable points elsewhere;
* ``prod``: nothing is assumed: the warehouse (``BLADE_WAREHOUSE_URL`` or
  ``DATABRICKS_SERVER_HOSTNAME`` + ``DATABRICKS_HTTP_PATH``, and ``DATABRICKS_TOKEN``), the
  catalog (``BLADE_CATALOG_URL``, ``BLADE_CATALOG_TOKEN``) and the lake (``BLADE_LAKE_URI``)
  must be set, or the code location fails to load naming the variables.

``BLADE_EXECUTOR`` (``in_process`` default, ``multiprocess``, ``celery``) picks where a run's
steps execute (``blade_pipeline/defs/executors.py``); ``celery`` uses ``BLADE_CELERY_BROKER_URL``
(required for ``prod``; the demo's RabbitMQ on 127.0.0.1 otherwise).

Secrets are only checked for presence here: the resources read them through ``dg.EnvVar`` so
that their values never reach run config, the UI or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

_S = TypeVar("_S", bound=BaseSettings)

DEMO_WAREHOUSE_URL = "http://127.0.0.1:8765/sql/1.0/warehouses/demo"
DEMO_WAREHOUSE_TOKEN = "dev-warehouse-token"  # the mock's default; not a secret
DEMO_CATALOG_URL = "http://127.0.0.1:8080"
DEMO_CATALOG_TOKEN = "dev-catalog-token"  # the mock catalog's default; not a secret
DEMO_LAKE_URI = ".blade/lake"
DEMO_LANDING_URI = ".blade/landing"  # where the demo's CSV drops land (kind: csv)
#: The RabbitMQ of the development and CI machines (guest/guest: RabbitMQ's loopback-only
#: default user, not a secret).
DEMO_CELERY_BROKER_URL = "pyamqp://guest:guest@127.0.0.1:5672//"


class SettingsError(ValueError):
    """The environment does not describe a usable deployment; names the variables."""


def _read(settings_class: type[_S]) -> _S:
    """The settings of this process's environment, or a :class:`SettingsError` naming each
    malformed variable."""
    try:
        return settings_class()
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors(include_input=False)]
        raise SettingsError("bad environment settings: " + "; ".join(problems)) from None


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class BladeSettings(BaseSettings):
    """The pipeline's environment variables (names as documented in docs/configuration.md)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    deployment: Literal["demo", "prod"] = Field(
        default="demo", validation_alias=_env("BLADE_DEPLOYMENT"))
    warehouse_url: str | None = Field(default=None, validation_alias=_env("BLADE_WAREHOUSE_URL"))
    server_hostname: str | None = Field(
        default=None, validation_alias=_env("DATABRICKS_SERVER_HOSTNAME"))
    http_path: str | None = Field(default=None, validation_alias=_env("DATABRICKS_HTTP_PATH"))
    databricks_token: SecretStr | None = Field(
        default=None, validation_alias=_env("DATABRICKS_TOKEN"))
    warehouse_max_retries: int = Field(default=3, ge=0, le=10,
                                       validation_alias=_env("BLADE_WAREHOUSE_MAX_RETRIES"))
    catalog_url: str | None = Field(default=None, validation_alias=_env("BLADE_CATALOG_URL"))
    catalog_token: SecretStr | None = Field(
        default=None, validation_alias=_env("BLADE_CATALOG_TOKEN"))
    catalog_batch_size: int | None = Field(
        default=None, ge=1, validation_alias=_env("BLADE_CATALOG_BATCH_SIZE"))
    catalog_parallel_uploads: int | None = Field(
        default=None, ge=1, le=16, validation_alias=_env("BLADE_CATALOG_PARALLEL_UPLOADS"))
    lake_uri: str | None = Field(default=None, validation_alias=_env("BLADE_LAKE_URI"))
    s3_endpoint: str | None = Field(default=None, validation_alias=_env("BLADE_S3_ENDPOINT"))
    s3_max_attempts: int = Field(default=6, ge=1, le=20,
                                 validation_alias=_env("BLADE_S3_MAX_ATTEMPTS"))
    landing_uri: str | None = Field(default=None,
                                    validation_alias=_env("BLADE_LANDING_URI"))
    sources_file: Path | None = Field(default=None,
                                      validation_alias=_env("BLADE_SOURCES_FILE"))
    sensor_interval_seconds: int = Field(
        default=30, ge=1, validation_alias=_env("BLADE_SENSOR_INTERVAL_SECONDS"))
    alert_interval_seconds: int = Field(
        default=30, ge=1, validation_alias=_env("BLADE_ALERT_INTERVAL_SECONDS"))
    executor: Literal["in_process", "multiprocess", "celery"] = Field(
        default="in_process", validation_alias=_env("BLADE_EXECUTOR"))
    celery_broker_url: SecretStr | None = Field(
        default=None, validation_alias=_env("BLADE_CELERY_BROKER_URL"))
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=_env("BLADE_LOG_FORMAT"))
    dagster_url: str = Field(default="http://127.0.0.1:3000",
                             validation_alias=_env("BLADE_DAGSTER_URL"))
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=_env("BLADE_ALERT_WEBHOOK_URL"))
    alert_webhook_format: Literal["json", "slack"] = Field(
        default="json", validation_alias=_env("BLADE_ALERT_WEBHOOK_FORMAT"))
    alert_smtp_host: str | None = Field(default=None,
                                        validation_alias=_env("BLADE_ALERT_SMTP_HOST"))
    alert_smtp_port: int = Field(default=25, ge=1, le=65535,
                                 validation_alias=_env("BLADE_ALERT_SMTP_PORT"))
    alert_smtp_from: str | None = Field(default=None,
                                        validation_alias=_env("BLADE_ALERT_SMTP_FROM"))
    alert_smtp_to: str = Field(default="", validation_alias=_env("BLADE_ALERT_SMTP_TO"))
    alert_smtp_user: str | None = Field(default=None,
                                        validation_alias=_env("BLADE_ALERT_SMTP_USER"))
    alert_smtp_password: SecretStr | None = Field(
        default=None, validation_alias=_env("BLADE_ALERT_SMTP_PASSWORD"))
    alert_smtp_starttls: bool = Field(default=False,
                                      validation_alias=_env("BLADE_ALERT_SMTP_STARTTLS"))

    step_retry_delay_seconds: float = Field(
        default=2.0, ge=0, le=3600, validation_alias=_env("BLADE_STEP_RETRY_DELAY_SECONDS"))

    @classmethod
    def load(cls) -> BladeSettings:
        """The settings of this process's environment; :class:`SettingsError` naming each
        variable that is malformed, or missing for ``prod``."""
        settings = _read(cls)
        missing = settings.missing_for_deployment()
        if missing:
            raise SettingsError(
                f"BLADE_DEPLOYMENT={settings.deployment} needs {', '.join(missing)} (unset or "
                "empty); set them, or BLADE_DEPLOYMENT=demo for the local mock services")
        return settings

    def missing_for_deployment(self) -> list[str]:
        """Variables ``prod`` requires that are unset (nothing for ``demo``)."""
        if self.deployment != "prod":
            return []
        missing = []
        if not (self.warehouse_url or (self.server_hostname and self.http_path)):
            missing.append("BLADE_WAREHOUSE_URL (or DATABRICKS_SERVER_HOSTNAME + "
                           "DATABRICKS_HTTP_PATH)")
        required = {"DATABRICKS_TOKEN": self.databricks_token,
                    "BLADE_CATALOG_URL": self.catalog_url,
                    "BLADE_CATALOG_TOKEN": self.catalog_token, "BLADE_LAKE_URI": self.lake_uri}
        if self.executor == "celery":
            required["BLADE_CELERY_BROKER_URL"] = self.celery_broker_url
        missing += [name for name, value in required.items()
                    if not (value.get_secret_value() if isinstance(value, SecretStr) else value)]
        return missing


DEMO_NATS_URL = "nats://127.0.0.1:4222"
#: Signs the demo's and the tests' ingest tokens; ``prod`` must set its own secret or a JWKS.
DEMO_INGEST_JWT_SECRET = "dev-ingest-secret-not-for-production"


class IngestSettings(BaseSettings):
    """The settings of ``blade ingest-server`` (push ingestion), checked like the pipeline's."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    deployment: Literal["demo", "prod"] = Field(
        default="demo", validation_alias=_env("BLADE_DEPLOYMENT"))
    nats_url: SecretStr = Field(default=SecretStr(DEMO_NATS_URL),
                                validation_alias=_env("BLADE_NATS_URL"))
    stream: str = Field(default="BLADE_INGEST", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                        validation_alias=_env("BLADE_INGEST_STREAM"))
    jwt_secret: SecretStr | None = Field(default=None,
                                         validation_alias=_env("BLADE_INGEST_JWT_SECRET"))
    jwks_url: str | None = Field(default=None, validation_alias=_env("BLADE_INGEST_JWKS_URL"))
    jwt_audience: str = Field(default="blade-ingest",
                              validation_alias=_env("BLADE_INGEST_JWT_AUDIENCE"))
    max_body_bytes: int = Field(default=16 << 20, ge=1024, le=1 << 30,
                                validation_alias=_env("BLADE_INGEST_MAX_BODY_BYTES"))
    dedupe_window_seconds: int = Field(default=3600, ge=1, le=7 * 86400,
                                       validation_alias=_env("BLADE_INGEST_DEDUPE_WINDOW_SECONDS"))
    # connections + requests served at once; past it the server answers 503 (clients retry)
    max_concurrent_requests: int = Field(
        default=256, ge=1, le=100_000,
        validation_alias=_env("BLADE_INGEST_MAX_CONCURRENT_REQUESTS"))
    # a batch the drain took but did not ack (it died) is delivered again after this long
    drain_ack_wait_seconds: float = Field(
        default=60.0, gt=0, le=3600, validation_alias=_env("BLADE_INGEST_DRAIN_ACK_WAIT_SECONDS"))

    @classmethod
    def load(cls) -> IngestSettings:
        """The ingest server's settings; :class:`SettingsError` naming what is wrong."""
        settings = _read(cls)
        if settings.jwt_secret is not None and len(settings.jwt_secret.get_secret_value()) < 32:
            raise SettingsError("BLADE_INGEST_JWT_SECRET must be at least 32 bytes (HS256)")
        if settings.deployment == "prod" and not (settings.jwt_secret or settings.jwks_url):
            raise SettingsError("BLADE_DEPLOYMENT=prod needs BLADE_INGEST_JWKS_URL (or "
                                "BLADE_INGEST_JWT_SECRET) to verify ingest tokens")
        return settings

    def secret(self) -> str | None:
        """The HS256 secret: the configured one, the demo's when nothing is configured."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return None if self.jwks_url else DEMO_INGEST_JWT_SECRET


class _StepRetrySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    step_retry_delay_seconds: float = BladeSettings.model_fields["step_retry_delay_seconds"]


def step_retry_delay_seconds() -> float:
    """``BLADE_STEP_RETRY_DELAY_SECONDS``: the first delay of the steps' RetryPolicy (doubling
    after each attempt). Read alone, when the step definitions are built: a deployment's other
    settings are checked when the code location loads."""
    try:
        return _StepRetrySettings().step_retry_delay_seconds
    except ValidationError as exc:
        problem = exc.errors(include_input=False)[0]["msg"]
        raise SettingsError(f"bad environment settings: BLADE_STEP_RETRY_DELAY_SECONDS: "
                            f"{problem}") from None
