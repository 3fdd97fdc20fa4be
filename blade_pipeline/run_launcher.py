"""Alias of :mod:`blade_pipeline.ops.run_launcher` (for a dagster.yaml naming this path)."""

from blade_pipeline.ops.run_launcher import LocalProcessRunLauncher as LocalProcessRunLauncher
