"""A loopback S3 API for the demo, the bench and the tests: moto's server mode (``moto[server]``,
in the ``devservices`` extra), in memory, started as a child process like the other services."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from blade_pipeline.devservices.processes import ServerProcess

#: moto accepts any credentials: placeholders in the standard AWS variables, not secrets.
LOOPBACK_S3_ENV = {"AWS_ACCESS_KEY_ID": "loopback", "AWS_SECRET_ACCESS_KEY": "loopback-secret",
                   "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def start_s3(port: int, log: Path, timeout: float = 60) -> ServerProcess:
    """Start moto's S3 server on 127.0.0.1:``port`` (log to ``log``); returns once it answers."""
    server = ServerProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                            str(port)], port, log)
    server.start("/", timeout=timeout)
    return server


def create_bucket(server: ServerProcess, bucket: str) -> str:
    """Create ``bucket`` on the loopback S3 API; returns ``s3://bucket``."""
    httpx.put(f"{server.base_url}/{bucket}", timeout=30).raise_for_status()
    return f"s3://{bucket}"


def use_loopback_credentials() -> None:
    """Set the placeholder AWS variables in this process (and its children) where unset."""
    for name, value in LOOPBACK_S3_ENV.items():
        os.environ.setdefault(name, value)
