"""Alias of :mod:`blade_pipeline.ops.celery_app` (for workers started with this path)."""

from blade_pipeline.ops.celery_app import app as app
