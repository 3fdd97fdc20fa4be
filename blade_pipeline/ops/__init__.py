"""Operating the pipeline: alerts, freshness, structured logs, the run launcher, the Celery app."""
