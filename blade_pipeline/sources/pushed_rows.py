"""The rows of push sources (``kind: push``), as the drain keeps them in the lake: one table
``pushed.<source>`` over ``<lake>/pushed/<source>/date=<day>/<log sequence>.parquet``, asked the
same Databricks SQL as a warehouse table (``sources.lake_rows``). Nothing drained yet reads as an
empty table. Beside the days, ``_committed.json`` counts the drain's commits and holds, per
day, the number of the last commit that wrote into it (what the drained sensor reads: one small
file a tick, however many batches the days hold), and the newest log sequence drained."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from blade_pipeline.sources.lake_rows import LakeRowsReader
from blade_pipeline.sources.reader import ConnectionCheck, SourceUnavailableError
from blade_pipeline.storage.lake import LakeError

PUSHED = "pushed"  # the lake folder (and SQL schema) of the drained rows
#: the column the drain adds: the tenant whose token pushed the row (into item metadata)
TENANT_COLUMN = "_tenant"
COMMITTED = "_committed.json"


@dataclass
class Committed:
    """What the drain has committed of a source: how many commits, per day (ISO date) the
    number of the last commit that wrote into it, and the newest log sequence drained.

    Commit numbers, not log sequences, mark the days: a batch the log delivers again after a
    crash comes after newer ones, and its day must still read as new."""

    commit: int = 0
    days: dict[str, int] = field(default_factory=dict)
    sequence: int = 0

    def as_json(self) -> dict:
        return {"commit": self.commit, "days": dict(sorted(self.days.items())),
                "sequence": self.sequence}


class PushedRows(LakeRowsReader):
    """The drained rows of push sources, in the pipeline's lake."""

    SCHEMA = PUSHED
    WHAT = "the drained rows of push sources"

    @property
    def endpoint(self) -> str:
        return self.lake.where(self.lake.path(PUSHED))

    def committed(self, source: str) -> Committed:
        """What the drain has committed of ``source`` (nothing yet: sequence 0, no days)."""
        value = self.lake.read_json(self.rows_dir(source, COMMITTED))
        if not value:
            return Committed()
        return Committed(int(value["commit"]),
                         {day: int(n) for day, n in value["days"].items()},
                         int(value["sequence"]))

    def commit(self, source: str, committed: Committed) -> None:
        """Record ``committed`` (atomically: a reader sees the old or the new file)."""
        self.lake.write_json(self.rows_dir(source, COMMITTED), committed.as_json())

    def test_connection(self) -> ConnectionCheck:
        """The lake answers: the push sources drained so far are listed (as "catalogs")."""
        started = time.perf_counter()
        try:
            names = self.lake.list_dirs(self.lake.path(PUSHED), action="list")
        except LakeError as exc:
            raise SourceUnavailableError(str(exc)) from None
        return ConnectionCheck(self.endpoint, names,
                               round(1000 * (time.perf_counter() - started), 1))
