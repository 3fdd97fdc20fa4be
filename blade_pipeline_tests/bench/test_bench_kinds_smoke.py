"""Small `blade bench --source csv | postgres` runs, to keep those stages working (figures are
not asserted; a module of its own so it runs beside the other bench smoke tests)."""

import json
import subprocess
import sys

import pytest

from blade_pipeline.bench.run import KIND_STAGES


@pytest.mark.slow
@pytest.mark.extended
def test_bench_of_csv_and_postgres_sources_runs(tmp_path):
    """`--source csv` against its pyarrow.csv copy; `--source postgres`'s own stage (dlt, the
    peer, is installed in a venv of its own on first use: measured by hand, see the README)."""
    for args, stages in ((["--source", "csv"], KIND_STAGES["csv"]),
                         (["--source", "postgres", "--stages", "ceiling,stage_postgres"],
                          ("ceiling", "stage_postgres"))):
        out = tmp_path / "bench.json"
        proc = subprocess.run([sys.executable, "-m", "blade_pipeline.cli", "bench", "--rows",
                               "20000", *args, "--out", str(out)], capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(out.read_text())["stages"]
        assert tuple(result) == stages
        assert all(e["rows_per_s"] > 0 and e["ratio_to_ceiling"] > 0 for e in result.values())
    assert result["stage_postgres"]["rows_per_s"] > 0
    # the machine's PostgreSQL server shares the cores: its CPU for the stage's queries counts
    assert result["stage_postgres"]["server_cpu_s"] > 0
