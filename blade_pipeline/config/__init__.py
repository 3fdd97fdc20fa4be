"""Configuration: every environment setting, the sources (sources.yaml) and their Pandera models."""
