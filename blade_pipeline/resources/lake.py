"""ParquetLake: where staged partitions, quarantine files and upload checkpoints live.

Layout under the lake root (a local path by default, ``s3://bucket/prefix`` when configured)::

    <data_type>/date=YYYY-MM-DD/part-0.parquet             valid BLADE items of the day
    <data_type>/quarantine/date=YYYY-MM-DD/part-0.parquet  invalid rows, with a reason each
    <data_type>/checkpoints/date=YYYY-MM-DD.json           catalog upload progress
    queries/<run_id>/...                                   ad-hoc query job output

Writes are atomic: a hidden temp file is written, fsynced and renamed over the target, so a
reader sees the old partition or the new one, never a partial file. On object stores, where a
PUT is atomic by itself, the object is written in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from blade_pipeline.settings import DEMO_LAKE_URI, BladeSettings

DATA_FILE = "part-0.parquet"
#: A background fdatasync starts once this much more is written (big partitions only).
SYNC_BEHIND_BYTES = 4 * 1024 * 1024
METADATA_KEY = b"blade"


class LakeError(Exception):
    """The lake could not be written or read; names the path and the cause."""


@dataclass(frozen=True)
class WriteResult:
    """What an atomic Parquet write produced."""

    path: str
    rows: int
    bytes: int


class ParquetLake(dg.ConfigurableResource):
    """Parquet files on a pyarrow filesystem (local directory or S3)."""

    uri: str = Field(default=DEMO_LAKE_URI, description="Local path or s3://bucket/prefix.")
    compression: str = Field(default="zstd", description="Parquet compression codec.")
    row_group_rows: int = Field(default=128_000, ge=1_000, description="Rows per row group.")

    _fs: pafs.FileSystem | None = PrivateAttr(default=None)
    _root: str = PrivateAttr(default="")

    @classmethod
    def from_env(cls, settings: BladeSettings | None = None) -> ParquetLake:
        """``BLADE_LAKE_URI`` if set, else (demo deployment) ``.blade/lake``."""
        settings = settings or BladeSettings.load()
        return cls(uri=dg.EnvVar("BLADE_LAKE_URI")) if settings.lake_uri else cls()

    # ---- paths ----------------------------------------------------------------------------
    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            if "://" in self.uri:
                self._fs, self._root = pafs.FileSystem.from_uri(self.uri)
            else:
                self._fs, self._root = pafs.LocalFileSystem(), str(Path(self.uri).resolve())
        return self._fs, self._root.rstrip("/")

    @property
    def is_local(self) -> bool:
        return isinstance(self._filesystem()[0], pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Absolute path (or bucket key) of ``parts`` under the lake root."""
        return "/".join([self._filesystem()[1], *parts])

    def partition_dir(self, data_type: str, day: str, kind: str = "") -> str:
        """Directory of a day's staged items (kind "") or quarantined rows ("quarantine")."""
        return self.path(data_type, *([kind] if kind else []), f"date={day}")

    def checkpoint_path(self, data_type: str, day: str) -> str:
        return self.path(data_type, "checkpoints", f"date={day}.json")

    # ---- writes -----------------------------------------------------------------------------
    def open_writer(self, directory: str, schema: pa.Schema) -> PartitionWriter:
        """A writer of ``directory/part-0.parquet``: nothing is visible until ``commit``."""
        return PartitionWriter(self, directory, schema)

    def write_parquet(self, directory: str, schema: pa.Schema,
                      batches: Iterable[pa.RecordBatch | pa.Table],
                      metadata: Mapping[str, Any] | None = None) -> WriteResult:
        """Stream ``batches`` into ``directory/part-0.parquet`` atomically (replacing it)."""
        writer = self.open_writer(directory, schema)
        try:
            for batch in batches:
                writer.write(batch)
        except BaseException:
            writer.abort()
            raise
        return writer.commit(metadata)

    def write_json(self, path: str, value: Any) -> None:
        """Write a small JSON document atomically (checkpoints)."""
        fs, _ = self._filesystem()
        data = json.dumps(value, sort_keys=True).encode()
        parent = path.rsplit("/", 1)[0]
        try:
            fs.create_dir(parent, recursive=True)
            if not self.is_local:
                with fs.open_output_stream(path) as out:
                    out.write(data)
                return
            temp = f"{parent}/.tmp-{uuid.uuid4().hex}.json"
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            _fsync_dir(parent)
        except OSError as exc:
            raise LakeError(f"cannot write {path}: {exc}") from exc

    # ---- reads ------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        fs, _ = self._filesystem()
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_json(self, path: str) -> Any | None:
        """A JSON document, or None when absent."""
        fs, _ = self._filesystem()
        if not self.exists(path):
            return None
        with fs.open_input_stream(path) as handle:
            return json.loads(handle.read())

    def parquet_file(self, directory: str) -> pq.ParquetFile | None:
        """The partition's Parquet file (footer only is read until iterated), or None."""
        fs, _ = self._filesystem()
        target = f"{directory}/{DATA_FILE}"
        if not self.exists(target):
            return None
        return pq.ParquetFile(fs.open_input_file(target))

    def footer_metadata(self, directory: str) -> dict[str, Any] | None:
        """The ``blade`` footer metadata of a partition file, or None when absent."""
        pf = self.parquet_file(directory)
        if pf is None:
            return None
        try:
            return self.blade_footer(pf)
        finally:
            pf.close(force=True)

    @staticmethod
    def blade_footer(pf: pq.ParquetFile) -> dict[str, Any]:
        """The ``blade`` footer metadata of an open partition file ({} if it has none)."""
        raw = (pf.metadata.metadata or {}).get(METADATA_KEY)
        return json.loads(raw) if raw else {}

    def iter_batches(self, directory: str, batch_rows: int,
                     columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Batches of a partition file (nothing if the partition is absent)."""
        pf = self.parquet_file(directory)
        if pf is None:
            return
        try:
            yield from pf.iter_batches(batch_size=batch_rows, columns=columns)
        finally:
            pf.close(force=True)


class PartitionWriter:
    """Streams row groups into one Parquet file and publishes it atomically on ``commit``.

    Locally: a hidden temp file in the target directory, fsynced, renamed over the target,
    directory fsynced. On object stores the object is written in place (a PUT is atomic).
    While rows are written, a background thread flushes what is written so far to disk
    (``fdatasync``), so that the fsync of ``commit`` has little left to do.
    """

    def __init__(self, lake: ParquetLake, directory: str, schema: pa.Schema):
        self.lake, self.schema = lake, schema
        self.target = f"{directory}/{DATA_FILE}"
        self.directory = directory
        self.rows = 0
        self._synced = 0  # bytes of the temp file handed to a background fdatasync
        self._syncing: threading.Thread | None = None
        fs, _ = lake._filesystem()
        try:
            fs.create_dir(directory, recursive=True)
            if lake.is_local:
                self.temp: str | None = f"{directory}/.tmp-{uuid.uuid4().hex}.parquet"
                self._sink: Any = open(self.temp, "wb")  # noqa: SIM115 (closed in commit/abort)
            else:
                self.temp = None
                self._sink = fs.open_output_stream(self.target)
            self._writer = pq.ParquetWriter(self._sink, schema, compression=lake.compression,
                                            **_encoding(schema))
        except OSError as exc:
            self.abort()
            raise LakeError(f"cannot write {self.target}: {exc.strerror or exc}") from exc

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if not batch.num_rows:
            return
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if table.schema != self.schema:
            table = table.cast(self.schema)
        try:
            self._writer.write_table(table, row_group_size=self.lake.row_group_rows)
            if self.temp is not None:
                self._sync_behind()
        except OSError as exc:
            self.abort()
            raise LakeError(f"cannot write {self.target}: {exc.strerror or exc}") from exc
        self.rows += table.num_rows

    def _sync_behind(self) -> None:
        """Start an ``fdatasync`` of what is written so far, unless one still runs (the next
        write starts another) or less than ``SYNC_BEHIND_BYTES`` came since the last one
        (a small day: ``commit``'s fsync has little to do, and a thread start costs more);
        ``commit`` fsyncs whatever is left."""
        if self._syncing is not None and self._syncing.is_alive():
            return
        written = self._sink.tell()
        if written - self._synced < SYNC_BEHIND_BYTES:
            return
        self._synced = written
        self._sink.flush()
        fd = self._sink.fileno()
        self._syncing = threading.Thread(target=_datasync_quietly, args=(fd,),
                                          name="lake-sync", daemon=True)
        self._syncing.start()

    def _wait_for_sync(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def commit(self, metadata: Mapping[str, Any] | None = None) -> WriteResult:
        """Close the file (footer ``blade`` = ``metadata``) and make it the partition."""
        try:
            if metadata is not None:
                self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(metadata).encode()})
            self._writer.close()
            if self.temp is None:
                self._sink.close()
                size = self.lake._filesystem()[0].get_file_info(self.target).size
                return WriteResult(self.target, self.rows, size)
            self._wait_for_sync()
            self._sink.flush()
            os.fsync(self._sink.fileno())
            self._sink.close()
            os.replace(self.temp, self.target)
            _fsync_dir(self.directory)
        except OSError as exc:
            self.abort()
            raise LakeError(f"cannot write {self.target}: {exc.strerror or exc}") from exc
        return WriteResult(self.target, self.rows, os.path.getsize(self.target))

    def abort(self) -> None:
        """Drop the temp file; the previous partition (if any) stays as it was."""
        with contextlib.suppress(Exception):
            self._wait_for_sync()  # the file descriptor must outlive the sync using it
        for close in (getattr(self, "_writer", None), getattr(self, "_sink", None)):
            with contextlib.suppress(Exception):
                if close is not None:
                    close.close()
        if getattr(self, "temp", None):
            with contextlib.suppress(OSError):
                os.unlink(self.temp)


#: Long unique text (JSON documents, hashes) gains nothing from dictionaries or min/max stats.
_PLAIN_COLUMNS = frozenset({"data", "content_hash", "_reason"})
#: Unique per item: a dictionary would be built and then dropped (statistics are kept).
_UNIQUE_COLUMNS = frozenset({"item_id", "last_modified"})


def _encoding(schema: pa.Schema) -> dict[str, Any]:
    """Statistics for every column but long unique text; dictionaries for repeating values."""
    stats = [f.name for f in schema if f.name not in _PLAIN_COLUMNS]
    return {"use_dictionary": [n for n in stats if n not in _UNIQUE_COLUMNS],
            "write_statistics": stats}


def _datasync_quietly(fd: int) -> None:
    """Flush written pages of ``fd`` to disk; errors surface in the commit's own fsync."""
    with contextlib.suppress(OSError):
        os.fdatasync(fd)


def _fsync_dir(directory: str) -> None:
    """Persist a rename: fsync the directory entry (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
