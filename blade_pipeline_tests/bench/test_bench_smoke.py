"""A small `blade bench` run, to keep the benchmark working (figures are not asserted)."""

import json
import subprocess
import sys

import pytest

from blade_pipeline.bench.run import S3_STAGES, STAGE_ORDER


@pytest.mark.slow
@pytest.mark.extended
def test_bench_runs_every_stage_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "blade_pipeline.cli", "bench", "--rows", "20000", "--lake", "s3",
         "--backfill-days", "180",
         "--out", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["stages"]) == [*STAGE_ORDER, *S3_STAGES]
    for stage, entry in result["stages"].items():
        assert entry["rows_per_s"] > 0 and entry["peak_rss_mb"] > 0, stage
        assert entry["ratio_to_ceiling"] > 0 and entry["added_rss_mb"] >= 0
        assert entry["cpu_s"] > 0, stage
    # the catalog's work is counted where the stage talks to it (~0.2 CPU-s for 20k items);
    # the ceiling runs in-process (CPU times tick by 10 ms: small stages may read 0)
    stages = result["stages"]
    for stage in ("upload", "materialize"):
        assert stages[stage]["server_cpu_s"] > stages["ceiling"]["server_cpu_s"], stage
    assert result["stages"]["ceiling"]["ratio_to_ceiling"] == 1.0
    assert "vs ceiling" in proc.stdout and "server CPU s" in proc.stdout
    # --lake s3: each S3 stage against its local-disk stage, the S3 API's CPU counted
    for stage in S3_STAGES:
        assert stages[stage]["ratio_to_local"] > 0 and stages[stage]["server_cpu_s"] > 0, stage
    assert stages["stage_s3"]["ratio_to_s3_ceiling"] > 0
    assert "stage_s3: " in proc.stdout and "on local disk (same run)" in proc.stdout
    # a range run's instance events: a planned event and a materialization per day of each of
    # the two assets, and a handful per run (no event per day and check)
    for stage in ("backfill", "backfill_small"):
        days_per_run = stages[stage]["days"] / stages[stage]["runs"]
        assert 4 * days_per_run < stages[stage]["instance_events_per_run"] \
            < 4 * days_per_run + 100, stage
    assert stages["backfill"]["seconds_vs_materialize"] > 0
