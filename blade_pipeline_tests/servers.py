"""Test helpers to run the dev services as real subprocesses on free loopback ports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from blade_pipeline.devservices.processes import (
    ServerProcess,
    blade_command,
    free_port,
    running,
)
from blade_pipeline.storage.catalog import CatalogClient

__all__ = ["ServerProcess", "blade_command", "catalog_reader", "free_port", "running"]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@contextlib.contextmanager
def catalog_reader(catalog: ServerProcess) -> Iterator[CatalogClient]:
    """A client of a second catalog service on ``catalog``'s store, without the first one's
    injected faults: reading back what a deliberately slow catalog holds at full speed (the
    ``--latency-ms`` of a slow catalog applies to every page of a listing)."""
    port = free_port()
    token = _option(catalog.args, "--token")
    with running(blade_command("mock-catalog", "--port", str(port),
                               "--db", _option(catalog.args, "--db"), "--token", token),
                 port, catalog.log_path.with_name(f"reader-{port}.log"), "/healthz") as reader:
        yield CatalogClient(base_url=reader.base_url, token=token)
