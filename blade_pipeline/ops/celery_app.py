"""The Celery app the workers run: ``celery -A blade_pipeline.ops.celery_app worker -Q dagster
-c 1 -n <name>@%h`` (docs/scale-out.md).

It is dagster-celery's step task on the same broker, backend and settings as the executor of
``BLADE_EXECUTOR=celery`` (``blade_pipeline/defs/executors.py``): the broker from
``BLADE_CELERY_BROKER_URL`` (or the demo's RabbitMQ). A worker needs the same environment as
the run worker: ``DAGSTER_HOME`` (the shared PostgreSQL instance), the lake, catalog and
warehouse variables, this package installed.
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from blade_pipeline.config.settings import DEMO_CELERY_BROKER_URL, BladeSettings
from blade_pipeline.defs.executors import CELERY_BACKEND, CELERY_CONFIG

_settings = BladeSettings.load()
_broker = (_settings.celery_broker_url.get_secret_value() if _settings.celery_broker_url
           else DEMO_CELERY_BROKER_URL)
app = make_app(CeleryExecutor.for_cli(broker=_broker, backend=CELERY_BACKEND,
                                      config_source=CELERY_CONFIG).app_args())
execute_plan = create_task(app)
