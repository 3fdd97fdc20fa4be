"""blade_pipeline: BLADE data from a Databricks SQL warehouse into the catalog, run by Dagster."""

__version__ = "0.1.0"
