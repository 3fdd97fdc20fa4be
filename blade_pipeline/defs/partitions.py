"""Partitions: one per day of a source's watermark column, from its partition_start to today."""

from __future__ import annotations

import dagster as dg

from blade_pipeline.config.sources import BladeSource


def daily_partitions(source: BladeSource) -> dg.DailyPartitionsDefinition:
    """Daily partitions (UTC) starting at ``partition_start``; today's partition included."""
    return dg.DailyPartitionsDefinition(start_date=source.partition_start.isoformat(),
                                        timezone="UTC", end_offset=1)
