"""The rows of push sources (``kind: push``), as the drain keeps them in the lake: one table
``pushed.<source>`` over ``<lake>/pushed/<source>/date=<day>/<log sequence>.parquet``, asked the
same Databricks SQL as a warehouse table (``sources.lake_rows``). Nothing drained yet reads as an
empty table."""

from __future__ import annotations

import time

from blade_pipeline.sources.lake_rows import LakeRowsReader
from blade_pipeline.sources.reader import ConnectionCheck, SourceUnavailableError
from blade_pipeline.storage.lake import LakeError

PUSHED = "pushed"  # the lake folder (and SQL schema) of the drained rows
#: the column the drain adds: the tenant whose token pushed the row (into item metadata)
TENANT_COLUMN = "_tenant"


class PushedRows(LakeRowsReader):
    """The drained rows of push sources, in the pipeline's lake."""

    SCHEMA = PUSHED
    WHAT = "the drained rows of push sources"

    @property
    def endpoint(self) -> str:
        return self.lake.where(self.lake.path(PUSHED))

    def drained_files(self, source: str) -> dict[str, list[int]]:
        """Day -> the log sequences drained into it (from the file names)."""
        days: dict[str, list[int]] = {}
        for directory in self.lake.list_dirs(self.rows_dir(source)):
            if not directory.startswith("date="):
                continue
            names = [path.rsplit("/", 1)[-1]
                     for path in self.lake.list_files(self.rows_dir(source, directory))]
            days[directory[5:]] = sorted(int(n[:-8]) for n in names
                                         if n.endswith(".parquet") and n[:-8].isdigit())
        return days

    def test_connection(self) -> ConnectionCheck:
        """The lake answers: the push sources drained so far are listed (as "catalogs")."""
        started = time.perf_counter()
        try:
            names = self.lake.list_dirs(self.lake.path(PUSHED), action="list")
        except LakeError as exc:
            raise SourceUnavailableError(str(exc)) from None
        return ConnectionCheck(self.endpoint, names,
                               round(1000 * (time.perf_counter() - started), 1))
