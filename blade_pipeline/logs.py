"""Alias of :mod:`blade_pipeline.ops.logs` for instances whose dagster.yaml names this path."""

from blade_pipeline.ops.logs import JsonLinesHandler as JsonLinesHandler
