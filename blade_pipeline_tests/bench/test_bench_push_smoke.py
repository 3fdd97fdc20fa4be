"""A small `blade bench --source push` run, to keep it working (figures are not asserted; a
module of its own so it runs beside the other bench smoke tests)."""

import json
import subprocess
import sys

import pytest

from blade_pipeline.bench.run import KIND_STAGES
from blade_pipeline_tests.nats_support import NATS_URL, nats_answers, run_async


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.skipif(not nats_answers(), reason="NATS does not answer on 4222")
def test_bench_of_push_ingestion_runs_and_removes_its_streams(tmp_path):
    """`--source push`: clients in their own processes against two ingest servers on the
    machine's NATS; the log's own rate is the ceiling, the 1k-record latencies are reported,
    and the bench's streams are gone afterwards."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "blade_pipeline.cli", "bench", "--rows",
                           "20000", "--source", "push", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = json.loads(out.read_text())["stages"]
    assert tuple(stages) == KIND_STAGES["push"]
    for stage, entry in stages.items():
        assert entry["rows_per_s"] > 0 and entry["ratio_to_ceiling"] > 0, stage
    assert stages["push_ceiling"]["ratio_to_ceiling"] == 1.0
    assert 0 < stages["push_latency"]["p50_ms"] <= stages["push_latency"]["p99_ms"]
    # the ingest servers' and NATS's CPU is counted where a stage talks to them
    assert stages["push_arrow"]["server_cpu_s"] > 0
    assert "ack latency p50" in proc.stdout and "of push_ceiling" in proc.stdout
    assert not [s for s in run_async(_stream_names()) if s.startswith("BLADE_BENCH_")]


async def _stream_names() -> list[str]:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        return [info.config.name for info in await nc.jetstream().streams_info()]
    finally:
        await nc.close()
