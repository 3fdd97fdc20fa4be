"""Stage a partition (one day or a range of days) of a source: the staged asset's whole step.

extract the range (one streamed query) -> plan the run's schema against the source's history
-> validate / quarantine -> items -> one Parquet file per day; then record the observed schema
version (and adopt it when the source's ``schema_policy`` says so). The staged asset and
`blade bench` both call :func:`stage_partition`, so the bench measures the production path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import SourceReader
from blade_pipeline.steps import extract, schema_policy
from blade_pipeline.steps.items import IngestRun
from blade_pipeline.steps.schema_policy import RunSchema, SchemaPlan
from blade_pipeline.steps.schema_versions import SchemaHistory
from blade_pipeline.steps.staging import RangeProgress, StageResult, day_range_bounds, stage_days
from blade_pipeline.storage.lake import ParquetLake


@dataclass(frozen=True)
class StagedPartition:
    """What staging a partition did: each day's result, and the run's schema."""

    days: dict[str, StageResult]
    raw_schema: pa.Schema | None  # the source's schema as read (None: no rows came)
    plan: SchemaPlan | None  # the run's schema plan (None: no rows came)
    run_schema: RunSchema | None  # what the run recorded in the schema history
    history: SchemaHistory

    @property
    def drift(self) -> list[str]:
        """The schema differences any day reported, once each."""
        return sorted({e for r in self.days.values() for e in r.schema_errors})

    @property
    def extracted(self) -> int:
        return sum(r.extracted for r in self.days.values())


def stage_partition(source: BladeSource, reader: SourceReader, lake: ParquetLake,
                    days: list[str], run: IngestRun,
                    batch_rows: int = extract.DEFAULT_BATCH_ROWS,
                    on_batch: Callable[[RangeProgress], None] | None = None) -> StagedPartition:
    """Stage ``days`` (consecutive ``YYYY-MM-DD``, ascending) of ``source`` from ``reader``
    into ``lake``, one partition per day (an empty day included). Raises the reader's
    :class:`~blade_pipeline.sources.reader.SourceError` or the lake's ``LakeError``; a run
    that fails records no schema version."""
    history = SchemaHistory(lake, source.data_type)
    bounds = day_range_bounds(days[0], days[-1])
    # keys repeated within a day (one day: within the run, the cheaper query)
    duplicates = extract.duplicate_keys(reader, source, source_sql.partition_rows(source),
                                        bounds, by_day=len(days) > 1)
    schemas: list[pa.Schema] = []
    plans: list[SchemaPlan] = []

    def planner(schema: pa.Schema) -> SchemaPlan:
        schemas.append(schema)
        plans.append(schema_policy.plan_run(source, history, schema))
        return plans[0]

    batches = extract.extract(reader, source_sql.partition_rows(source, len(days)), bounds,
                              batch_rows)
    results = stage_days(source, batches, lake, days, run, on_batch=on_batch,
                         duplicates=duplicates, planner=planner)
    run_schema = schema_policy.finish_run(plans[0], history, run.run_id) if plans else None
    return StagedPartition(results, schemas[0] if schemas else None,
                           plans[0] if plans else None, run_schema, history)
