"""`blade bench` refuses arguments that would measure nothing, before starting any server."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("args", "says"), [
    (["--rows", "0"], "--rows: 0 is not at least 1"),
    (["--batch-rows", "-5"], "--batch-rows: -5 is not at least 1"),
    (["--repeat", "two"], "--repeat: 'two' is not a whole number"),
    (["--data-type", "cargo"], "unknown data type 'cargo'"),
    (["--stages", "stage,warp"], "unknown stage(s): warp"),
    (["--source", "oracle"], "argument --source: invalid choice: 'oracle'"),
])
def test_bad_arguments_are_refused_with_the_reason(args, says):
    proc = subprocess.run([sys.executable, "-m", "blade_pipeline.cli", "bench", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "blade bench:" not in proc.stdout  # no table: nothing was measured
