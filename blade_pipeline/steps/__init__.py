"""The pipeline's steps as plain functions over Arrow (no Dagster here): stage, check, upload."""
