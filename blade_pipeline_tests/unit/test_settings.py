"""Environment settings and the named deployment (BLADE_DEPLOYMENT)."""

import os
import subprocess
import sys

import pytest

from blade_pipeline.config.settings import (
    DEMO_CATALOG_URL,
    DEMO_WAREHOUSE_URL,
    BladeSettings,
    SettingsError,
    step_retry_delay_seconds,
)
from blade_pipeline.defs.executors import executor_from_env
from blade_pipeline.defs.resources import resources_from_env

VARIABLES = ("BLADE_DEPLOYMENT", "BLADE_WAREHOUSE_URL", "DATABRICKS_SERVER_HOSTNAME",
             "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN", "BLADE_CATALOG_URL",
             "BLADE_CATALOG_TOKEN", "BLADE_LAKE_URI", "BLADE_CATALOG_BATCH_SIZE",
             "BLADE_CATALOG_PARALLEL_UPLOADS", "BLADE_EXECUTOR", "BLADE_CELERY_BROKER_URL",
             "BLADE_LOG_FORMAT", "BLADE_POSTGRES_URL", "BLADE_MYSQL_URL", "BLADE_LANDING_URI",
             "BLADE_S3_MAX_ATTEMPTS", "BLADE_WAREHOUSE_MAX_RETRIES")
PROD = {"BLADE_DEPLOYMENT": "prod", "BLADE_WAREHOUSE_URL": "https://wh.example/sql/1.0/x",
        "DATABRICKS_TOKEN": "dapi-secret-1234", "BLADE_CATALOG_URL": "https://catalog.example",
        "BLADE_CATALOG_TOKEN": "catalog-secret-5678", "BLADE_LAKE_URI": "s3://lake/blade",
        "BLADE_POSTGRES_URL": "postgresql://blade:pg-secret-9012@db.example:5432/units",
        "BLADE_LANDING_URI": "s3://drops/landing"}


@pytest.fixture
def env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_env


def test_the_demo_deployment_falls_back_to_the_local_mock_services(env):
    resources = resources_from_env()
    assert resources["warehouse"].url == DEMO_WAREHOUSE_URL
    assert resources["catalog"].base_url == DEMO_CATALOG_URL
    assert resources["lake"].uri == ".blade/lake"


def test_prod_with_nothing_set_names_every_missing_variable(env):
    env(BLADE_DEPLOYMENT="prod", DATABRICKS_TOKEN="dapi-secret-1234")
    with pytest.raises(SettingsError) as caught:
        resources_from_env()
    message = str(caught.value)
    for name in ("BLADE_WAREHOUSE_URL", "BLADE_CATALOG_URL", "BLADE_CATALOG_TOKEN",
                 "BLADE_LAKE_URI"):
        assert name in message
    assert "DATABRICKS_TOKEN," not in message and "dapi-secret-1234" not in message


def test_prod_fully_set_reads_secrets_through_envvars_only(env):
    env(**PROD)
    resources = resources_from_env()
    shown = repr(resources) + str({k: r.model_dump() for k, r in resources.items()})
    assert "dapi-secret-1234" not in shown and "catalog-secret-5678" not in shown
    assert "pg-secret-9012" not in shown
    assert resources["csv"].lake is resources["lake"]  # landed rows live in the lake
    assert BladeSettings.load().missing_for_deployment() == []


def test_hostname_and_path_count_as_a_warehouse_and_an_unknown_deployment_is_refused(env):
    env(**{**PROD, "BLADE_WAREHOUSE_URL": "", "DATABRICKS_SERVER_HOSTNAME": "adb.example",
           "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/x"})
    assert BladeSettings.load().missing_for_deployment() == []
    env(BLADE_DEPLOYMENT="staging")
    with pytest.raises(SettingsError, match="BLADE_DEPLOYMENT"):
        BladeSettings.load()


def test_a_malformed_number_names_its_variable(env):
    env(BLADE_CATALOG_BATCH_SIZE="lots")
    with pytest.raises(SettingsError, match="BLADE_CATALOG_BATCH_SIZE"):
        resources_from_env()
    env(BLADE_CATALOG_BATCH_SIZE="5000", BLADE_CATALOG_PARALLEL_UPLOADS="4")
    catalog = resources_from_env()["catalog"]
    assert (catalog.batch_size, catalog.parallel_uploads) == (5000, 4)


def test_the_code_location_fails_to_load_in_prod_naming_the_variables(tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    proc = subprocess.run([sys.executable, "-c", "import blade_pipeline.definitions"],
                          env={**clean, "BLADE_DEPLOYMENT": "prod"}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "SettingsError" in proc.stderr and "BLADE_CATALOG_URL" in proc.stderr


@pytest.mark.parametrize(("value", "name"), [
    (None, "in_process"), ("in_process", "in_process"), ("multiprocess", "multiprocess"),
    ("celery", "blade_celery_executor")])
def test_blade_executor_picks_where_steps_run(env, value, name):
    if value:
        env(BLADE_EXECUTOR=value)
    assert executor_from_env().name == name


def test_the_celery_broker_is_read_from_the_environment_when_the_executor_starts(
        env, monkeypatch):
    env(BLADE_EXECUTOR="celery", BLADE_CELERY_BROKER_URL="pyamqp://blade:s3cret@mq:5672//")
    executor = executor_from_env()  # configured now; the variable is read when a run starts
    monkeypatch.setenv("BLADE_CELERY_BROKER_URL", "pyamqp://blade:rotated@mq:5672//")
    config = executor.config_schema.resolve_config({}).value["config"]
    assert config["broker"] == "pyamqp://blade:rotated@mq:5672//"
    assert config["config_source"]["task_acks_late"] is True  # a dead worker's step is redone


def test_a_bad_executor_or_a_prod_celery_without_broker_is_refused(env):
    env(BLADE_EXECUTOR="threads")
    with pytest.raises(SettingsError, match="BLADE_EXECUTOR: Input should be 'in_process'"):
        BladeSettings.load()
    env(**PROD, BLADE_EXECUTOR="celery")
    with pytest.raises(SettingsError, match="BLADE_CELERY_BROKER_URL"):
        BladeSettings.load()


def test_retry_budgets_are_settable_and_checked(env, monkeypatch):
    """BLADE_S3_MAX_ATTEMPTS reaches the lake and the landing root, BLADE_WAREHOUSE_MAX_RETRIES
    the warehouse; the steps' RetryPolicy
    delay is BLADE_STEP_RETRY_DELAY_SECONDS (a bad value names the variable)."""
    resources = resources_from_env()
    assert resources["lake"].s3_max_attempts == resources["csv"].s3_max_attempts == 6
    env(BLADE_S3_MAX_ATTEMPTS="2")
    resources = resources_from_env()
    assert resources["lake"].s3_max_attempts == 2
    assert resources["csv"].landing.s3_max_attempts == 2
    assert resources["warehouse"].max_retries == 3
    env(BLADE_WAREHOUSE_MAX_RETRIES="1")
    assert resources_from_env()["warehouse"].max_retries == 1
    monkeypatch.setenv("BLADE_STEP_RETRY_DELAY_SECONDS", "0.5")
    assert step_retry_delay_seconds() == 0.5
    monkeypatch.setenv("BLADE_STEP_RETRY_DELAY_SECONDS", "-1")
    with pytest.raises(SettingsError, match="BLADE_STEP_RETRY_DELAY_SECONDS"):
        step_retry_delay_seconds()
    monkeypatch.delenv("BLADE_STEP_RETRY_DELAY_SECONDS")
    assert step_retry_delay_seconds() == 2.0
