"""Drive a running Dagster webserver through its GraphQL API (as the UI does)."""

from __future__ import annotations

import time
from typing import Any

import httpx

LOCATION, REPOSITORY = "blade_pipeline", "__repository__"

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}"""
TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on PythonError { message } }
}"""
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status typeSpecificData { ... on SensorData { lastCursor } } } }
  }
}"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status tags { key value } } } }
}"""


class DagsterGraphQL:
    """Minimal GraphQL client of the webserver at ``base_url``."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def query(self, query: str, **variables: Any) -> dict:
        answer = httpx.post(f"{self.base_url}/graphql", timeout=60,
                            json={"query": query, "variables": variables})
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_partition_run(self, job: str, partition: str) -> str:
        return self._launch(job, {"dagster/partition": partition})

    def launch_range_run(self, job: str, first: str, last: str) -> str:
        """One run over the partitions ``first``..``last`` (what a single-run backfill
        launches)."""
        return self._launch(job, {"dagster/asset_partition_range_start": first,
                                  "dagster/asset_partition_range_end": last})

    def _launch(self, job: str, tags: dict[str, str]) -> str:
        params = {"selector": {"repositoryLocationName": LOCATION,
                               "repositoryName": REPOSITORY, "jobName": job},
                  "executionMetadata": {"tags": [{"key": k, "value": v}
                                                 for k, v in tags.items()]}}
        launched = self.query(LAUNCH_RUN, params=params)["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launch refused: {launched}")
        return launched["run"]["runId"]

    def status(self, run_id: str) -> str:
        return self.query(RUN_STATUS, runId=run_id)["runOrError"]["status"]

    def wait_status(self, run_id: str, wanted: set[str], timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.status(run_id)
            if status in wanted:
                return status
            if status in {"SUCCESS", "FAILURE", "CANCELED"}:
                raise AssertionError(f"run {run_id} ended {status}, wanted {wanted}")
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} still {status} after {timeout}s")

    def terminate(self, run_id: str) -> None:
        answer = self.query(TERMINATE, runId=run_id)["terminateRun"]
        if answer["__typename"] != "TerminateRunSuccess":
            raise RuntimeError(f"terminate refused: {answer}")

    def reexecute_from_failure(self, run_id: str) -> str:
        answer = self.query(REEXECUTE, params={"parentRunId": run_id,
                                               "strategy": "FROM_FAILURE"})
        answer = answer["launchRunReexecution"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"re-execution refused: {answer}")
        return answer["run"]["runId"]

    def sensor_cursor(self, name: str) -> str | None:
        """The stored cursor of a sensor (None before its first tick)."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                    "sensorName": name}
        sensor = self.query(SENSOR_STATE, selector=selector)["sensorOrError"]
        return sensor["sensorState"]["typeSpecificData"]["lastCursor"]

    def runs(self, tags: dict[str, str] | None = None) -> list[dict]:
        run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return self.query(RUNS, filter=run_filter)["runsOrError"]["results"]
