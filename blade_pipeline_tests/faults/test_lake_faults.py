"""Case 9: a lake that cannot be written (not writable; full) fails clearly, leaves no file."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.defs.assets import catalog_key, staged_key
from blade_pipeline_tests.faults.conftest import (
    DAY,
    catalog_items,
    make_resources,
    materialized,
    run,
)


def unwritable_lake(tmp_path: Path) -> Path:
    """A lake root nothing can be created under. chmod 0o555 does not stop root (the CI and
    this suite's container run as root), so as root the root lies under a regular file:
    every mkdir below it fails with ENOTDIR, whoever runs it."""
    if os.geteuid() != 0:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
        return read_only / "lake"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the lake's parent directory should be\n")
    return blocker / "lake"


def assert_failed_cleanly(result, lake_root: Path, source, *, cause: str) -> str:
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1 and failures[0].step_key.endswith("staged")
    message = failures[0].event_specific_data.error.message
    assert f"[{source.data_type}]" in message and "cannot write" in message
    assert str(lake_root) in message and cause in message, message
    # A fatal error: the step's RetryPolicy must not re-run it.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert not materialized(result, staged_key(source))
    assert not materialized(result, catalog_key(source))
    return message


def test_9a_lake_not_writable_fails_at_once_naming_the_path(
        fault_warehouse, start_catalog, tmp_path, dagster_instance, recorded):
    lake_root = unwritable_lake(tmp_path)
    res = make_resources(fault_warehouse, start_catalog(), lake_root)
    source = source_for("maintenance")
    started = time.perf_counter()
    result = run(source, res, dagster_instance, recorded)
    assert time.perf_counter() - started < 15
    cause = "Not a directory" if os.geteuid() == 0 else "Permission denied"
    assert_failed_cleanly(result, lake_root, source, cause=cause)
    assert not lake_root.exists()
    assert catalog_items(res["catalog"], source.catalog_data_source) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs (needs root/CAP_SYS_ADMIN; skipped elsewhere)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_9b_disk_full_fails_at_once_and_leaves_no_partial_file(
        fault_warehouse, start_catalog, tiny_tmpfs, dagster_instance, recorded):
    lake_root = tiny_tmpfs / "lake"
    res = make_resources(fault_warehouse, start_catalog(), lake_root)
    source = source_for("maintenance")
    result = run(source, res, dagster_instance, recorded)
    assert_failed_cleanly(result, lake_root, source, cause="No space left on device")
    lake = res["lake"]
    for kind in ("", "quarantine"):
        directory = Path(lake.partition_dir("maintenance", DAY, kind))
        assert not (directory / "part-0.parquet").exists()
    # A run that fails records no schema version (never half of one, and none
    # for rows that were not staged): the next good run records it.
    assert not list((lake_root / "maintenance" / "_schema").glob("*"))
    leftovers = [p for p in lake_root.rglob("*") if p.is_file()]
    assert not leftovers, f"partial files left behind: {leftovers}"
    assert catalog_items(res["catalog"], source.catalog_data_source) == []
