"""Where data goes: the lake (staged Parquet, quarantine, checkpoints) and the catalog client."""
