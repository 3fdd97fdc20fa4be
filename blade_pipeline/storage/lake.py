"""ParquetLake: where staged partitions, quarantine files and upload checkpoints live.

Layout under the lake root (a local path by default, ``s3://bucket/prefix`` when configured)::

    <data_type>/date=YYYY-MM-DD/part-0.parquet             valid BLADE items of the day
    <data_type>/quarantine/date=YYYY-MM-DD/part-0.parquet  invalid rows, with a reason each
    <data_type>/checkpoints/date=YYYY-MM-DD.json           catalog upload progress
    <data_type>/rejected/date=YYYY-MM-DD/rows-*.parquet    items the catalog refused, with why
    queries/<run_id>/...                                   ad-hoc query job output

Writes are atomic: a reader sees the old partition or the new one, never a partial file.
Locally a hidden temp file is written, fsynced and renamed over the target. On an object store
(``s3://``, any S3-compatible endpoint) nothing ever streams to the final key: pyarrow cannot
abort an upload (closing, even garbage-collecting, a stream completes it), so the object is
written under ``<root>/.tmp/<uuid>``, verified, and copied over the target server-side
(CopyObject replaces a key atomically); the temp object is then deleted, and deleted too when
the write fails. A killed process can only leave an invisible incomplete upload under ``.tmp/``
(a bucket lifecycle rule AbortIncompleteMultipartUpload clears those). Transient object-store
errors (503 SlowDown, 5xx, resets, timeouts) are retried with backoff by the AWS SDK inside
pyarrow (its standard strategy, ``s3_max_attempts``: the one retry layer for the lake); fatal ones
(AccessDenied, NoSuchBucket, bad credentials) fail at once. Either way a ``LakeError`` names the
object (``s3://bucket/key``) and the store's error code, says which kind it is and what to do,
and never holds a credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from blade_pipeline.config.settings import DEMO_LAKE_URI, BladeSettings

DATA_FILE = "part-0.parquet"
TEMP_DIR = ".tmp"  # object stores: under the lake root, outside every partition's prefix
#: A background fdatasync starts once this much more is written (big partitions only).
SYNC_BEHIND_BYTES = 4 * 1024 * 1024
METADATA_KEY = b"blade"


#: AWS SDK error codes (as pyarrow prints them) of a store that may recover: the SDK's retry
#: strategy retried them already; an unknown code with an HTTP 5xx status is one too.
TRANSIENT_CODES = frozenset({"SLOW_DOWN", "THROTTLING", "THROTTLING_EXCEPTION",
                             "INTERNAL_FAILURE", "SERVICE_UNAVAILABLE", "NETWORK_CONNECTION",
                             "REQUEST_TIMEOUT", "REQUEST_TIMEOUT_EXCEPTION", "UNAVAILABLE"})
_CREDENTIAL_CODES = frozenset({"ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "EXPIRED_TOKEN",
                               "MISSING_AUTHENTICATION_TOKEN", "SIGNATURE_DOES_NOT_MATCH",
                               "INVALID_CLIENT_TOKEN_ID", "UNRECOGNIZED_CLIENT"})
_AWS_ERROR = re.compile(r"AWS Error (\w+)(?: \(HTTP status (\d+)\))?")


class LakeError(Exception):
    """The lake could not be written or read; names the path and the cause. ``transient``:
    an object-store error that outlasted the SDK's retries (the store may recover)."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def lake_error(action: str, where: str, exc: OSError, *, attempts: int = 1,
               variable: str = "BLADE_LAKE_URI") -> LakeError:
    """A ``LakeError`` for ``exc`` met while ``action``-ing ``where``: local errors by their
    strerror, object-store errors by their AWS code, classified transient or fatal."""
    text = str(exc.strerror or exc) if not isinstance(exc, LakeError) else str(exc)
    match = _AWS_ERROR.search(text)
    if match is None:
        return LakeError(f"cannot {action} {where}: {text}")
    code, status = match.group(1), int(match.group(2) or 0)
    if code in TRANSIENT_CODES or (code == "UNKNOWN" and status >= 500):
        return LakeError(
            f"cannot {action} {where}: the object store kept failing ({code}, a transient "
            f"error) through the SDK's retries (up to {attempts} attempts with backoff); "
            f"re-execute from failure once it recovers (or raise s3_max_attempts). Store "
            f"said: {text}", transient=True)
    hint = ("check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the "
            "bucket's policy" if code in _CREDENTIAL_CODES else
            f"the bucket is gone: create it or point {variable} at one"
            if code == "NO_SUCH_BUCKET" else "see the store's message")
    return LakeError(f"cannot {action} {where}: {code}, a fatal object-store error (not "
                     f"retried): {hint}. Store said: {text}")


@dataclass(frozen=True)
class FileEntry:
    """A file of a lake-style folder, as listed."""

    path: str
    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WriteResult:
    """What an atomic Parquet write produced."""

    path: str
    rows: int
    bytes: int


class ParquetLake(dg.ConfigurableResource):
    """Parquet files on a pyarrow filesystem (local directory or S3)."""

    uri: str = Field(default=DEMO_LAKE_URI, description="Local path or s3://bucket/prefix.")
    s3_endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint (http(s)://host:port) for s3:// "
                                  "URIs; unset: AWS. Credentials: the standard AWS variables.")
    s3_max_attempts: int = Field(default=6, ge=1, description="attempts per S3 request (the "
                                 "SDK's standard retry strategy; transient errors only)")
    compression: str = Field(default="zstd", description="Parquet compression codec.")
    row_group_rows: int = Field(default=128_000, ge=1_000, description="Rows per row group.")
    role: Literal["lake", "landing"] = Field(
        default="lake", description="what this store is, as errors name it: the lake, or the "
                                    "landing root of CSV drops")

    _fs: pafs.FileSystem | None = PrivateAttr(default=None)
    _root: str = PrivateAttr(default="")

    @classmethod
    def from_env(cls, settings: BladeSettings | None = None) -> ParquetLake:
        """``BLADE_LAKE_URI`` if set, else (demo deployment) ``.blade/lake``."""
        settings = settings or BladeSettings.load()
        endpoint: dict[str, Any] = ({"s3_endpoint": dg.EnvVar("BLADE_S3_ENDPOINT")}
                                    if settings.s3_endpoint else {})
        endpoint["s3_max_attempts"] = settings.s3_max_attempts
        return cls(uri=dg.EnvVar("BLADE_LAKE_URI"), **endpoint) if settings.lake_uri \
            else cls(**endpoint)

    @classmethod
    def resolved(cls, settings: BladeSettings | None = None) -> ParquetLake:
        """The lake of :meth:`from_env` with the values read now, for processes outside
        Dagster (the ingest server's drain)."""
        settings = settings or BladeSettings.load()
        return cls(uri=settings.lake_uri or DEMO_LAKE_URI, s3_endpoint=settings.s3_endpoint,
                   s3_max_attempts=settings.s3_max_attempts)

    # ---- paths ----------------------------------------------------------------------------
    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            if self.uri.startswith("s3://"):
                self._fs, self._root = self._s3()
            elif "://" in self.uri:
                self._fs, self._root = pafs.FileSystem.from_uri(self.uri)
            else:
                self._fs, self._root = pafs.LocalFileSystem(), str(Path(self.uri).resolve())
        return self._fs, self._root.rstrip("/")

    def _s3(self) -> tuple[pafs.FileSystem, str]:
        """The S3 filesystem, built explicitly (``from_uri`` takes no retry or timeout
        settings), and the root ``bucket/prefix``; the bucket must exist (a missing bucket
        reads as "nothing there" otherwise)."""
        root = self.uri[len("s3://"):].strip("/")
        bucket = root.split("/", 1)[0]
        options: dict[str, Any] = {
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.s3_max_attempts),
            "connect_timeout": 5.0, "request_timeout": 60.0, "background_writes": True}
        if self.s3_endpoint:
            parts = urlsplit(self.s3_endpoint)
            options["endpoint_override"] = parts.netloc or parts.path
            options["scheme"] = parts.scheme or "https"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["region"] = region
        where = f"s3://{bucket}" + (f" at {self.s3_endpoint}" if self.s3_endpoint else "")
        try:
            fs = pafs.S3FileSystem(**options)
            info = fs.get_file_info(bucket)
        except OSError as exc:
            raise lake_error(f"reach the {self.role} bucket", where, exc,
                             attempts=self.s3_max_attempts, variable=self.variable) from None
        if info.type != pafs.FileType.Directory:
            raise LakeError(f"the {self.role} bucket {where} does not exist (create it, or set "
                            f"{self.variable} to an existing bucket)")
        return fs, root

    @property
    def variable(self) -> str:
        """The environment variable that points at this store."""
        return "BLADE_LANDING_URI" if self.role == "landing" else "BLADE_LAKE_URI"

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem of the lake (local or S3), for readers and writers that take
        one; paths come from :meth:`path`."""
        return self._filesystem()[0]

    @property
    def is_local(self) -> bool:
        return isinstance(self._filesystem()[0], pafs.LocalFileSystem)

    def where(self, path: str) -> str:
        """``path`` as a person would name it: ``s3://bucket/key`` on an object store."""
        return path if self.is_local else f"s3://{path}"

    @contextlib.contextmanager
    def errors(self, action: str, path: str) -> Iterator[None]:
        """Turn an ``OSError`` met while ``action``-ing ``path`` into a classified
        ``LakeError`` (see ``lake_error``)."""
        try:
            yield
        except LakeError:
            raise
        except OSError as exc:
            attempts = 1 if self.is_local else self.s3_max_attempts
            raise lake_error(action, self.where(path), exc, attempts=attempts,
                             variable=self.variable) from exc

    def path(self, *parts: str) -> str:
        """Absolute path (or bucket key) of ``parts`` under the lake root."""
        return "/".join([self._filesystem()[1], *parts])

    def partition_dir(self, data_type: str, day: str, kind: str = "") -> str:
        """Directory of a day's staged items (kind "") or quarantined rows ("quarantine")."""
        return self.path(data_type, *([kind] if kind else []), f"date={day}")

    def checkpoint_path(self, data_type: str, day: str) -> str:
        return self.path(data_type, "checkpoints", f"date={day}.json")

    @staticmethod
    def rejected_dir(items_dir: str) -> str:
        """Where the items of ``items_dir`` that the catalog refused are kept:
        ``<type>/date=D`` -> ``<type>/rejected/date=D`` (query runs alike)."""
        parent, name = items_dir.rsplit("/", 1)
        return f"{parent}/rejected/{name}"

    def delete_dir(self, directory: str) -> None:
        """Remove ``directory`` and everything under it (nothing if absent)."""
        fs = self.filesystem
        with self.errors("delete", directory):
            if fs.get_file_info(directory).type != pafs.FileType.NotFound:
                fs.delete_dir(directory)

    def list_files(self, directory: str) -> list[str]:
        """Paths of the files directly under ``directory`` (sorted; [] if absent)."""
        fs = self.filesystem
        with self.errors("read", directory):
            found = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return sorted(i.path for i in found if i.type == pafs.FileType.File
                      and not i.base_name.startswith("."))

    def list_dirs(self, directory: str, action: str = "read") -> list[str]:
        """Names of the folders directly under ``directory`` (sorted; [] if absent)."""
        fs = self.filesystem
        with self.errors(action, directory):
            found = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)

    def file_entries(self, directory: str) -> list[FileEntry]:
        """The files directly under ``directory`` with size and modification time (sorted by
        name; hidden ones left out; [] if absent)."""
        fs = self.filesystem
        with self.errors("read", directory):
            found = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return sorted((FileEntry(i.path, i.base_name, i.size or 0, i.mtime_ns or 0)
                       for i in found if i.type == pafs.FileType.File
                       and not i.base_name.startswith(".")), key=lambda e: e.name)

    def move(self, source: str, target: str) -> None:
        """Move a file (a rename locally; a server-side copy, then delete, on S3)."""
        fs = self.filesystem
        with self.errors("move", source):
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            fs.move(source, target)

    @contextlib.contextmanager
    def local_file(self, path: str) -> Iterator[str]:
        """A local path holding the file at ``path`` (on S3: a temporary download)."""
        if self.is_local:
            yield path
            return
        import shutil
        import tempfile

        fs = self.filesystem
        with tempfile.TemporaryDirectory(prefix="blade-") as tmp:
            local = os.path.join(tmp, path.rsplit("/", 1)[-1])
            with self.errors("read", path), fs.open_input_stream(path) as src, \
                    open(local, "wb") as out:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
            yield local

    def dataset(self, directory: str) -> Any:
        """The Parquet files under ``directory`` as one pyarrow dataset (their schemas
        unified: a column one file lacks reads as NULL there), or None when there are none."""
        import pyarrow.dataset as pads

        fs = self.filesystem
        with self.errors("read", directory):
            if fs.get_file_info(directory).type == pafs.FileType.NotFound:
                return None
            found = pads.dataset(directory, filesystem=fs, format="parquet")
            schemas = [fragment.physical_schema for fragment in found.get_fragments()]
            if not schemas:
                return None
            schema = pa.unify_schemas(schemas, promote_options="permissive")
            return pads.dataset(directory, filesystem=fs, format="parquet", schema=schema)

    # ---- writes -----------------------------------------------------------------------------
    def open_writer(self, directory: str, schema: pa.Schema,
                    name: str = DATA_FILE) -> PartitionWriter:
        """A writer of ``directory/<name>``: nothing is visible until ``commit``."""
        return PartitionWriter(self, directory, schema, name)

    def write_parquet(self, directory: str, schema: pa.Schema,
                      batches: Iterable[pa.RecordBatch | pa.Table],
                      metadata: Mapping[str, Any] | None = None,
                      name: str = DATA_FILE) -> WriteResult:
        """Stream ``batches`` into ``directory/<name>`` (default ``part-0.parquet``)
        atomically, replacing it."""
        writer = self.open_writer(directory, schema, name)
        try:
            for batch in batches:
                writer.write(batch)
        except BaseException:
            writer.abort()
            raise
        return writer.commit(metadata)

    def temp_path(self, suffix: str) -> str:
        """A fresh key under the object store's temp prefix (outside every partition)."""
        return self.path(TEMP_DIR, f"{uuid.uuid4().hex}{suffix}")

    def write_json(self, path: str, value: Any, *, create_only: bool = False) -> None:
        """Write a small JSON document atomically (checkpoints, schema versions).

        ``create_only``: raise ``FileExistsError`` if ``path`` exists (a new schema version
        number is taken once). Atomic on a local lake (a hard link); on S3 the object is
        looked for first, so two writers in the same instant could both succeed."""
        fs = self.filesystem
        data = json.dumps(value, sort_keys=True).encode()
        parent = path.rsplit("/", 1)[0]
        if not self.is_local:
            if create_only and self.exists(path):
                raise FileExistsError(path)
            temp = self.temp_path(".json")
            try:
                with self.errors("write", path):
                    with fs.open_output_stream(temp) as out:
                        out.write(data)
                    fs.copy_file(temp, path)  # CopyObject: the old document or the new one
            finally:
                with contextlib.suppress(OSError):
                    fs.delete_file(temp)
            return
        temp = f"{parent}/.tmp-{uuid.uuid4().hex}.json"
        try:
            with self.errors("write", path):
                fs.create_dir(parent, recursive=True)
                with open(temp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                if not create_only:
                    os.replace(temp, path)
            if create_only:
                try:
                    os.link(temp, path)  # fails if the name is taken, whoever took it
                except FileExistsError:
                    raise
                except OSError as exc:
                    raise lake_error("write", path, exc) from exc
            _fsync_dir(parent)
        finally:
            if create_only:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    # ---- reads ------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        fs = self.filesystem
        with self.errors("read", path):
            return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_json(self, path: str) -> Any | None:
        """A JSON document, or None when absent."""
        fs = self.filesystem
        if not self.exists(path):
            return None
        with self.errors("read", path), fs.open_input_stream(path) as handle:
            return json.loads(handle.read())

    def parquet_file(self, directory: str) -> pq.ParquetFile | None:
        """The partition's Parquet file (footer only is read until iterated), or None."""
        fs = self.filesystem
        target = f"{directory}/{DATA_FILE}"
        if not self.exists(target):
            return None
        with self.errors("read", target):
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
            with self.errors("read", f"{directory}/{DATA_FILE}"):
                yield from pf.iter_batches(batch_size=batch_rows, columns=columns)
        finally:
            pf.close(force=True)


class PartitionWriter:
    """Streams row groups into one Parquet file and publishes it atomically on ``commit``.

    Locally: a hidden temp file in the target directory, fsynced, renamed over the target,
    directory fsynced. On object stores: a temp object under ``.tmp/``, copied over the target
    on ``commit`` (see the module doc); ``abort`` deletes it.
    While rows are written, a background thread flushes what is written so far to disk
    (``fdatasync``), so that the fsync of ``commit`` has little left to do.
    """

    def __init__(self, lake: ParquetLake, directory: str, schema: pa.Schema,
                 name: str = DATA_FILE):
        self.lake, self.schema = lake, schema
        self.target = f"{directory}/{name}"
        self.directory = directory
        self.rows = 0
        self._synced = 0  # bytes of the temp file handed to a background fdatasync
        self._syncing: threading.Thread | None = None
        fs = lake.filesystem
        self.local = lake.is_local
        try:
            if self.local:
                fs.create_dir(directory, recursive=True)
                self.temp: str = f"{directory}/.tmp-{uuid.uuid4().hex}.parquet"
                self._sink: Any = open(self.temp, "wb")  # noqa: SIM115 (closed in commit/abort)
            else:
                self.temp = lake.temp_path(".parquet")
                self._sink = fs.open_output_stream(self.temp)
            self._writer = pq.ParquetWriter(self._sink, schema, compression=lake.compression,
                                            **_encoding(schema))
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc

    def _error(self, exc: OSError) -> LakeError:
        attempts = 1 if self.local else self.lake.s3_max_attempts
        return lake_error("write", self.lake.where(self.target), exc, attempts=attempts)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if not batch.num_rows:
            return
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if table.schema != self.schema:
            table = table.cast(self.schema)
        try:
            self._writer.write_table(table, row_group_size=self.lake.row_group_rows)
            if self.local:
                self._sync_behind()
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc
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
            if not self.local:
                return self._publish_object()
            self._wait_for_sync()
            self._sink.flush()
            os.fsync(self._sink.fileno())
            self._sink.close()
            os.replace(self.temp, self.target)
            _fsync_dir(self.directory)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc
        return WriteResult(self.target, self.rows, os.path.getsize(self.target))

    def _publish_object(self) -> WriteResult:
        """Object stores: finish the temp object (closing raises if a part failed), check it
        is the whole file, copy it over the target, delete it."""
        fs = self.lake.filesystem
        self._sink.close()
        with fs.open_input_file(self.temp) as handle:
            try:
                rows = pq.ParquetFile(handle).metadata.num_rows
            except pa.ArrowInvalid as exc:
                raise OSError(f"the written object is no Parquet file: {exc}") from None
        if rows != self.rows:
            raise OSError(f"the written object holds {rows} rows of {self.rows}")
        size = fs.get_file_info(self.temp).size
        fs.copy_file(self.temp, self.target)
        with contextlib.suppress(OSError):  # a leftover temp object is garbage, not an error
            fs.delete_file(self.temp)
        return WriteResult(self.target, self.rows, size)

    def abort(self) -> None:
        """Drop the temp file (object); the previous partition (if any) stays as it was."""
        with contextlib.suppress(Exception):
            self._wait_for_sync()  # the file descriptor must outlive the sync using it
        for close in (getattr(self, "_writer", None), getattr(self, "_sink", None)):
            with contextlib.suppress(Exception):
                if close is not None:
                    close.close()  # on an object store this completes the temp object only
        if getattr(self, "temp", None):
            with contextlib.suppress(OSError):
                if self.local:
                    os.unlink(self.temp)
                else:
                    self.lake.filesystem.delete_file(self.temp)


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
