"""Test helpers to run the dev services as real subprocesses on free loopback ports."""

from blade_pipeline.devservices.processes import (
    ServerProcess,
    blade_command,
    free_port,
    running,
)

__all__ = ["ServerProcess", "blade_command", "free_port", "running"]
