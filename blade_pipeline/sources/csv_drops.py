"""CSV drops (``kind: csv`` in sources.yaml): the landing folders, and the rows landed from them
read as a table.

Files land in ``<landing_uri>/<folder>/`` (a local path or ``s3://bucket/prefix``, like the
lake). ``sources.csv_landing`` parses each complete file once and keeps its rows in the
lake under ``landed/<folder>/<sha256[:16]>.parquet``; to the rest of the pipeline those files
are one table, ``landed.<folder>``, asked the same Databricks SQL as a warehouse table
(``sources.lake_rows``). Nothing landed yet reads as an empty table.
"""

from __future__ import annotations

import time

from pydantic import PrivateAttr

from blade_pipeline.config.settings import DEMO_LANDING_URI
from blade_pipeline.config.sources import CsvDrop
from blade_pipeline.sources.lake_rows import LakeRowsReader
from blade_pipeline.sources.reader import (
    ConnectionCheck,
    SourceUnavailableError,
)
from blade_pipeline.storage.lake import FileEntry, LakeError, ParquetLake

LANDED = "landed"  # the lake folder (and SQL schema) of the landed rows
PROCESSED = "_processed"  # where a landed file is moved, under its landing folder
REJECTED = "_rejected"  # where a file that cannot be read at all is moved
MARKER = ".done"


class CsvDrops(LakeRowsReader):
    """The landing folders of CSV sources and the rows landed from their files."""

    SCHEMA = LANDED
    WHAT = "the landed CSV rows"

    landing_uri: str = DEMO_LANDING_URI  # local path or s3://bucket/prefix
    s3_endpoint: str | None = None  # S3-compatible endpoint of an s3:// landing_uri
    s3_max_attempts: int = 6  # attempts per S3 request of an s3:// landing_uri (as the lake)

    _landing: ParquetLake | None = PrivateAttr(default=None)

    # ---- the landing folders ----------------------------------------------------------------
    @property
    def landing(self) -> ParquetLake:
        """The landing root, read and written like a lake (listing, moves, downloads)."""
        if self._landing is None:
            self._landing = ParquetLake(uri=self.landing_uri, s3_endpoint=self.s3_endpoint,
                                        s3_max_attempts=self.s3_max_attempts, role="landing")
        return self._landing

    @property
    def endpoint(self) -> str:
        return self.landing.where(self.landing.path())

    def folder(self, drop: CsvDrop) -> str:
        return self.landing.path(drop.folder)

    def dropped(self, drop: CsvDrop) -> tuple[list[FileEntry], set[str]]:
        """The files in ``drop``'s folder matching its pattern, and the names of the data
        files whose ``.done`` marker is there."""
        import fnmatch

        entries = self.landing.file_entries(self.folder(drop))
        markers = {e.name[:-len(MARKER)] for e in entries if e.name.endswith(MARKER)}
        files = [e for e in entries if not e.name.endswith(MARKER)
                 and fnmatch.fnmatch(e.name, drop.pattern)]
        return files, markers

    def landed_dir(self, folder: str, *parts: str) -> str:
        return self.rows_dir(folder, *parts)

    def test_connection(self) -> ConnectionCheck:
        """The landing root answers: its folders are listed (as "catalogs")."""
        started = time.perf_counter()
        try:
            folders = self.landing.list_dirs(self.landing.path(), action="list")
        except LakeError as exc:
            raise SourceUnavailableError(str(exc)) from None
        return ConnectionCheck(self.endpoint, folders,
                               round(1000 * (time.perf_counter() - started), 1))
