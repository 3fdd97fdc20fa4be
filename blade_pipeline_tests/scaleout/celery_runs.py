"""A run of a BLADE job as its own process (the run worker), steps on Celery workers:

    python -m blade_pipeline_tests.scaleout.celery_runs execute JOB PARTITION
    python -m blade_pipeline_tests.scaleout.celery_runs reexecute RUN_ID   # from failure

The job comes from ``blade_pipeline.definitions`` as the code location builds it, so
``BLADE_EXECUTOR=celery`` in the environment puts its steps on the workers. Prints the run's
id and outcome as JSON on the last line; exit status 0 when the run succeeded.
"""

from __future__ import annotations

import json
import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository


def main(argv: list[str]) -> int:
    repository = ReconstructableRepository.for_module("blade_pipeline.definitions", "defs")
    with dg.DagsterInstance.get() as instance:
        if argv[0] == "execute":
            job, partition = argv[1], argv[2]
            result = dg.execute_job(repository.get_reconstructable_job(job), instance,
                                    tags={"dagster/partition": partition})
        else:
            run = instance.get_run_by_id(argv[1])
            assert run is not None, f"no run {argv[1]}"
            # execute_job does not carry the parent's partition over (the UI and the daemon do)
            partition = {k: v for k, v in run.tags.items() if k.startswith("dagster/partition")
                         or k.startswith("dagster/asset_partition_range")}
            result = dg.execute_job(
                repository.get_reconstructable_job(run.job_name), instance, tags=partition,
                reexecution_options=dg.ReexecutionOptions.from_failure(run.run_id, instance))
    print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
