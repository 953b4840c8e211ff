"""A real `dagster dev` (webserver + daemon) on a scratch DAGSTER_HOME, driven through the UI's GraphQL API.

Shared by the daemon tests and the backfill benchmark, so both start, query and stop it the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

REPO = Path(__file__).resolve().parents[1]
LOCATION = "pendo_assets"
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
TERMINAL_BACKFILL_STATUSES = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})


class GraphQLError(RuntimeError):
    pass


def scratch_home(path: Path) -> Path:
    """A DAGSTER_HOME holding the project's dagster.yaml, as `make` prepares it (one slot per pool)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "pendo_assets" / "dagster.yaml", path / "dagster.yaml")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dagster_dev(env: Mapping[str, str], output: Path | None = None, port: int | None = None) -> Iterator[str]:
    """Yields the GraphQL URL of `dagster dev -w workspace.yaml` once its code location has loaded.

    It runs in its own process group, stopped as a whole on exit: webserver, daemon, code server, run workers.
    `output` receives its stdout and stderr (appended, so a restart keeps the earlier log).
    """
    port = port or free_port()
    with open(output, "ab") if output else open(os.devnull, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            wait_for_code_location(url, server, output)
            yield url
        finally:
            stop_process_group(server)


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 60) -> None:
    """SIGTERM to the whole group, as Ctrl-C in a terminal would; SIGKILL whatever still runs after the grace."""
    _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _group_alive(process) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reaps the leader once it exits; as a zombie it would still count as a member
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_code_location(url: str, server: subprocess.Popen, output: Path | None = None,
                           timeout_seconds: float = 120) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {server.returncode} before it served {url}"
                               f"{log_tail(output)}")
        try:
            entries = gql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                               "locationOrLoadError { __typename } } } } }")["workspaceOrError"]["locationEntries"]
        except OSError:
            entries = []
        if any(e["name"] == LOCATION and e["locationOrLoadError"] and
               e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
            return
        time.sleep(1)
    raise TimeoutError(f"dagster dev did not load code location {LOCATION} within {timeout_seconds:.0f} s"
                       f"{log_tail(output)}")


def log_tail(output: Path | None, lines: int = 60) -> str:
    if output is None or not output.exists():
        return ""
    tail = output.read_text(errors="replace").splitlines()[-lines:]
    return f"\ndagster dev log ({output}), last {len(tail)} lines:\n" + "\n".join(tail)


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(url, json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    if "errors" in answer:
        raise GraphQLError(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def launch_partition_backfill(url: str, partitions: list[str], asset_keys: list[list[str]]) -> str:
    """What the UI's "Materialize" dialog does for a selection of partitions; returns the backfill id."""
    launched = gql(url, """mutation($p: [String!], $a: [AssetKeyInput!]) { launchPartitionBackfill(backfillParams:
        {partitionNames: $p, assetSelection: $a, fromFailure: false}) { __typename
        ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                   {"p": partitions, "a": [{"path": key} for key in asset_keys]})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"backfill not launched: {launched}")
    return launched["backfillId"]


def backfill_status(url: str, backfill_id: str) -> str:
    return gql(url, """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
        ... on PartitionBackfill { status } } }""", {"id": backfill_id})["partitionBackfillOrError"]["status"]


def launch_partition_run(url: str, partition: str, asset_keys: list[list[str]]) -> str:
    """What the UI's "Materialize" of a single partition does; returns the run id."""
    launched = gql(url, """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
        ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                   {"params": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                                            "jobName": "__ASSET_JOB",
                                            "assetSelection": [{"path": key} for key in asset_keys]},
                               "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
                               "runConfigData": {}}})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise GraphQLError(f"run not launched: {launched}")
    return launched["run"]["runId"]


def runs(url: str, tags: Mapping[str, str] | None = None) -> list[dict]:
    """Every run (or those carrying all `tags`), newest first, with the timings the benchmark reports."""
    return gql(url, """query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results {
        runId status creationTime startTime endTime tags { key value } stepStats { startTime endTime } } } } }""",
               {"t": [{"key": k, "value": v} for k, v in (tags or {}).items()]})["runsOrError"]["results"]
