"""Unity Catalog volumes on the mock warehouse: ``PUT``, ``GET`` and ``REMOVE`` on
``/Volumes/<catalog>/<schema>/<volume>/<path>`` (or ``dbfs:/Volumes/...``), and on the legacy
personal staging area ``stage://tmp/<user>/<path>``, backed by a folder, the way the
connector's staging operations use them.

A staging statement answers one row in a result marked ``isStagingOperation`` (Thrift) or
``is_volume_operation`` (Statement Execution API), with the columns ``operation``,
``presignedUrl``, ``headers`` (a JSON object) and, for ``PUT``/``GET``, ``localFile`` (the
local path as the statement wrote it, or ``__input_stream__``); the connector checks
``localFile`` against its ``staging_allowed_local_path`` and moves the bytes itself with an HTTP
``PUT``/``GET``/``DELETE`` on that URL. Here the URL is the warehouse's own ``/volumes/<token>``:
a single-use token, valid for 15 minutes, bound to the one file and operation the statement
allowed. As on Databricks, a ``GET`` or ``REMOVE`` of a missing file is planned and its HTTP
request answers 404. Files are written atomically (a temporary file renamed).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from blade_pipeline.databricks_sql import DatabricksSqlError

GRANT_TTL_SECONDS = 15 * 60
#: The one user the mock's token stands for: its ``stage://tmp/<user>/`` area is its own.
STAGING_USER = "dev-user@example.com"
#: ``localFile`` of a ``PUT`` whose bytes come from ``cursor.execute(..., input_stream=...)``.
INPUT_STREAM = "__input_stream__"


def _literal(name: str) -> str:
    """A SQL string literal (``''`` escapes a quote) captured as group ``name``."""
    return rf"'(?P<{name}>(?:[^']|'')*)'"


_STAGING = re.compile(
    rf"^\s*(?:PUT\s+{_literal('local')}\s+INTO\s+{_literal('target')}"
    rf"(?P<overwrite>\s+OVERWRITE)?|GET\s+{_literal('source')}\s+TO\s+{_literal('to')}"
    rf"|REMOVE\s+{_literal('path')})\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_STAGE_AREA = re.compile(r"^stage://tmp/(?P<user>[^/]+)/(?P<path>.+)$")
#: Error classes a warehouse answers for staging statements (from the connector's end-to-end
#: suite run against real warehouses; the SQLSTATEs are the mock's choice).
_INVALID_PATH = ("INVALID_STAGING_PATH_IN_STAGING_ACCESS_QUERY", "42601")
_EMPTY_LOCAL = ("EMPTY_LOCAL_FILE_IN_STAGING_ACCESS_QUERY", "42601")
_EXISTS = ("FILE_IN_STAGING_PATH_ALREADY_EXISTS", "42K04")
_DENIED = ("PERMISSION_DENIED", "42501")


def _unquote(literal: str) -> str:
    return literal.replace("''", "'")


@dataclass(frozen=True)
class StagingOp:
    """A parsed ``PUT ... INTO``, ``GET ... TO`` or ``REMOVE`` statement."""

    operation: str  # PUT, GET, REMOVE
    volume_path: str
    local_file: str | None = None
    overwrite: bool = False


def parse_staging(sql: str) -> StagingOp | None:
    """The staging operation of ``sql``; None when it is not one."""
    match = _STAGING.match(sql)
    if not match:
        return None
    if match["target"] is not None:
        return StagingOp("PUT", _unquote(match["target"]), _unquote(match["local"]),
                         bool(match["overwrite"]))
    if match["source"] is not None:
        return StagingOp("GET", _unquote(match["source"]), _unquote(match["to"]))
    return StagingOp("REMOVE", _unquote(match["path"]))


def _error(kind: tuple[str, str], message: str) -> DatabricksSqlError:
    return DatabricksSqlError(kind[0], message, kind[1])


def _invalid(path: str) -> DatabricksSqlError:
    return _error(_INVALID_PATH, f"'{path}' is not a path a staging operation can use: "
                  "expected /Volumes/<catalog>/<schema>/<volume>/<path> (or dbfs:/Volumes/...) "
                  "or stage://tmp/<user>/<path>, without empty, '.' or '..' segments.")


def _segments(rest: str, path: str) -> list[str]:
    """The names of ``rest`` (a path below its root); refuses traversal and empty names."""
    parts = rest.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise _invalid(path)
    return parts


@dataclass(frozen=True)
class _Grant:
    operation: str
    file: Path
    expires: float


class Volumes:
    """The volumes of the warehouse's catalogs, under ``root/<catalog>/<schema>/<volume>``, and
    the staging area of the warehouse's one user, under ``root/.stage/<user>``."""

    def __init__(self, root: Path, catalogs: Mapping[str, str], user: str = STAGING_USER):
        self.root, self.catalogs, self.user = root, catalogs, user
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def file(self, path: str) -> Path:
        """The backing file of ``/Volumes/<catalog>/<schema>/<volume>/<path>`` (also written
        ``dbfs:/Volumes/...``) or of ``stage://tmp/<user>/<path>`` (the user's own only)."""
        if stage := _STAGE_AREA.match(path):
            if stage["user"].lower() != self.user.lower():
                raise _error(_DENIED, f"User does not have permission to access '{path}': a "
                             "user may only use its own staging area stage://tmp/<user>/.")
            return self.root.joinpath(".stage", self.user, *_segments(stage["path"], path))
        volume = path.removeprefix("dbfs:")
        if not volume.startswith("/Volumes/"):
            raise _invalid(path)
        parts = _segments(volume.removeprefix("/Volumes/"), path)
        if len(parts) < 4:
            raise _invalid(path)
        catalog = parts[0].lower()
        if catalog not in self.catalogs:
            raise DatabricksSqlError("NO_SUCH_CATALOG_EXCEPTION",
                                     f"NOT_FOUND: Catalog '{catalog}' does not exist.", "42704")
        return self.root.joinpath(catalog, *parts[1:])

    def plan(self, op: StagingOp, base_url: str) -> pa.Table:
        """The row telling the connector where to move the bytes (checks the statement)."""
        if op.operation != "REMOVE" and not op.local_file:
            raise _error(_EMPTY_LOCAL, f"The local file of a {op.operation} cannot be empty.")
        target = self.file(op.volume_path)
        if op.operation == "PUT" and target.exists() and not op.overwrite:
            raise _error(_EXISTS, f"'{op.volume_path}' already exists: PUT ... OVERWRITE to "
                         "replace it.")
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._grants = {k: g for k, g in self._grants.items() if g.expires > now}
            self._grants[token] = _Grant(op.operation, target, now + GRANT_TTL_SECONDS)
        columns = {"operation": pa.array([op.operation]),
                   "presignedUrl": pa.array([f"{base_url}/volumes/{token}"]),
                   "headers": pa.array([json.dumps({})])}
        if op.operation != "REMOVE":  # a REMOVE touches no local file
            columns["localFile"] = pa.array([op.local_file], pa.string())
        return pa.table(columns)

    def serve(self, method: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
        """Answer the connector's HTTP request on a presigned URL: (status, body)."""
        wanted = {"PUT": "PUT", "GET": "GET", "DELETE": "REMOVE"}.get(method)
        with self._lock:
            grant = self._grants.get(token)
            if grant is None or grant.expires < time.time() or grant.operation != wanted:
                return 403, b"unknown, expired or used link"
            del self._grants[token]  # single use
        if wanted == "PUT":
            try:
                grant.file.parent.mkdir(parents=True, exist_ok=True)
                partial = grant.file.with_name(f".{grant.file.name}.{token[:8]}.partial")
                partial.write_bytes(body)
                partial.replace(grant.file)
            except OSError:  # a folder where the file goes, or a file where a folder goes
                return 409, b"the path is a directory or lies below a file"
            return 201, b""
        if not grant.file.is_file():
            return 404, b"The specified file does not exist."
        if wanted == "GET":
            return 200, grant.file.read_bytes()
        grant.file.unlink()
        return 204, b""
