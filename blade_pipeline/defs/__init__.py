"""Dagster shells around the steps: the asset factory, checks, jobs, sensors, schedules,
resources."""
