"""A small `blade bench` run, to keep the benchmark working (figures are not asserted)."""

import json
import subprocess
import sys

import pytest

from blade_pipeline_tests.bench.run import STAGE_ORDER


@pytest.mark.slow
def test_bench_runs_every_stage_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "blade_pipeline.cli", "bench", "--rows", "20000",
         "--out", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["stages"]) == list(STAGE_ORDER)
    for stage, entry in result["stages"].items():
        assert entry["rows_per_s"] > 0 and entry["peak_rss_mb"] > 0, stage
        assert entry["ratio_to_ceiling"] > 0 and entry["added_rss_mb"] >= 0
    assert result["stages"]["ceiling"]["ratio_to_ceiling"] == 1.0
    assert "vs ceiling" in proc.stdout and "materialize" in proc.stdout
