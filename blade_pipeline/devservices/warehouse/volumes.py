"""Unity Catalog volumes on the mock warehouse: ``PUT``, ``GET`` and ``REMOVE`` on
``/Volumes/<catalog>/<schema>/<volume>/<path>``, backed by a folder, the way the connector's
staging operations use them.

A staging statement answers one row (``operation``, ``presignedUrl``, ``localFile``,
``headers``) in a result marked ``isStagingOperation``; the connector then moves the bytes itself
with an HTTP ``PUT``/``GET``/``DELETE`` on that URL. Here the URL is the warehouse's own
``/volumes/<token>``: a single-use token, valid for 15 minutes, bound to the one file and
operation the statement allowed. Files are written atomically (a temporary file renamed).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa

from blade_pipeline.databricks_sql import DatabricksSqlError

GRANT_TTL_SECONDS = 15 * 60
_STAGING = re.compile(
    r"^\s*(?:PUT\s+'(?P<local>[^']*)'\s+INTO\s+'(?P<target>[^']*)'(?P<overwrite>\s+OVERWRITE)?"
    r"|GET\s+'(?P<source>[^']*)'\s+TO\s+'(?P<to>[^']*)'"
    r"|REMOVE\s+'(?P<path>[^']*)')\s*;?\s*$", re.IGNORECASE | re.DOTALL)


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
        return StagingOp("PUT", match["target"], match["local"], bool(match["overwrite"]))
    if match["source"] is not None:
        return StagingOp("GET", match["source"], match["to"])
    return StagingOp("REMOVE", match["path"])


@dataclass(frozen=True)
class _Grant:
    operation: str
    file: Path
    expires: float


class Volumes:
    """The volumes of the warehouse's catalogs, under ``root/<catalog>/<schema>/<volume>``."""

    def __init__(self, root: Path, catalogs: Mapping[str, str]):
        self.root, self.catalogs = root, catalogs
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def file(self, volume_path: str) -> Path:
        """The backing file of ``/Volumes/<catalog>/<schema>/<volume>/<path>``."""
        parts = PurePosixPath(volume_path).parts
        if len(parts) < 6 or parts[:2] != ("/", "Volumes") or any(
                p in ("..", ".") for p in parts):
            raise DatabricksSqlError(
                "INVALID_VOLUME_PATH", f"'{volume_path}' is not a file of a volume: expected "
                "/Volumes/<catalog>/<schema>/<volume>/<path>.", "42K05")
        catalog = parts[2].lower()
        if catalog not in self.catalogs:
            raise DatabricksSqlError("NO_SUCH_CATALOG_EXCEPTION",
                                     f"Catalog '{catalog}' was not found.", "42704")
        return self.root.joinpath(catalog, *parts[3:])

    def plan(self, op: StagingOp, base_url: str) -> pa.Table:
        """The row telling the connector where to move the bytes (checks the statement)."""
        target = self.file(op.volume_path)
        if op.operation == "PUT" and target.exists() and not op.overwrite:
            raise DatabricksSqlError(
                "FILE_ALREADY_EXISTS", f"'{op.volume_path}' already exists: PUT ... OVERWRITE "
                "to replace it.", "42K04")
        if op.operation in ("GET", "REMOVE") and not target.is_file():
            raise DatabricksSqlError("FILE_NOT_FOUND",
                                     f"'{op.volume_path}' does not exist.", "42K03")
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._grants = {k: g for k, g in self._grants.items() if g.expires > now}
            self._grants[token] = _Grant(op.operation, target, now + GRANT_TTL_SECONDS)
        return pa.table({
            "operation": pa.array([op.operation]),
            "presignedUrl": pa.array([f"{base_url}/volumes/{token}"]),
            "localFile": pa.array([op.local_file], pa.string()),
            "headers": pa.array([json.dumps({})])})

    def serve(self, method: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
        """Answer the connector's HTTP request on a presigned URL: (status, body)."""
        wanted = {"PUT": "PUT", "GET": "GET", "DELETE": "REMOVE"}.get(method)
        with self._lock:
            grant = self._grants.get(token)
            if grant is None or grant.expires < time.time() or grant.operation != wanted:
                return 403, b"unknown, expired or used link"
            del self._grants[token]  # single use
        if wanted == "PUT":
            grant.file.parent.mkdir(parents=True, exist_ok=True)
            partial = grant.file.with_name(f".{grant.file.name}.{token[:8]}.partial")
            partial.write_bytes(body)
            partial.replace(grant.file)
            return 201, b""
        if not grant.file.is_file():
            return 404, b"file not found"
        if wanted == "GET":
            return 200, grant.file.read_bytes()
        grant.file.unlink()
        return 204, b""
