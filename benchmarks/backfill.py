"""Backfill benchmark: 3 years of small days through a real `dagster dev` (webserver + daemon), as from the UI.

Generates the `one-time-3-years` scenario, starts `dagster dev` on a scratch DAGSTER_HOME with the
project's dagster.yaml, launches a partition backfill of one app's event tables over every day of
the export through the GraphQL API (what the UI's "Materialize" dialog does), waits for it, then
reports the wall time, the runs, where a run's time goes (start-up versus the loading step), and
how many per-day check results were recorded. Target: 1,095 days in <= 20 minutes.

Usage: python -m benchmarks.backfill [--port 3399]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
END_DAY = date(2025, 6, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3399, help="port for the scratch dagster dev (default 3399)")
    args = parser.parse_args()
    from pendo_assets.generator import generate

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        generated = generate(scenario="one-time-3-years", out_dir=scratch / "exports", end_day=END_DAY)
        app = generated.apps[0]
        manifest = json.loads(Path(app.manifest_path).read_text())
        days = sorted({p["periodId"][:10] for e in manifest["exports"] for p in e.get("timeDependent", [])})
        home = scratch / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "pendo_assets" / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(home), "PENDO_EXPORTS": str(scratch / "exports"),
               "PENDO_WAREHOUSE": str(scratch / "pendo.duckdb"), "PENDO_FIRST_DAY": days[0]}
        # The manifest sensor would load the same days at its first tick; stop it in the instance before
        # the daemon starts, so this measures a UI backfill alone.
        from pendo_assets.defs.assets import app_key_prefix
        from pendo_assets.pendo.tables import AppLocation

        sensor = f"{app_key_prefix(AppLocation(app.subscription_id, app.application_id))}_manifest"
        subprocess.run([sys.executable, "-m", "dagster", "sensor", "stop", sensor, "-w", "workspace.yaml"],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(args.port)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            return run_backfill(f"http://127.0.0.1:{args.port}/graphql", app, days, home)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def run_backfill(url: str, app, days: list[str], home: Path) -> int:
    from pendo_assets.defs.assets import app_key_prefix
    from pendo_assets.pendo.tables import AppLocation, EventTable

    wait_for_server(url)
    prefix = app_key_prefix(AppLocation(app.subscription_id, app.application_id))
    keys = [{"path": [prefix, table.value.lower()]} for table in EventTable]
    started = time.monotonic()
    launched = gql(url, """mutation($p: [String!], $a: [AssetKeyInput!]) { launchPartitionBackfill(backfillParams:
        {partitionNames: $p, assetSelection: $a, fromFailure: false}) { __typename
        ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""", {"p": days, "a": keys})
    backfill = launched["launchPartitionBackfill"]["backfillId"]
    print(f"backfill {backfill}: {len(days)} days ({days[0]} .. {days[-1]}) of {prefix}", flush=True)
    while True:
        time.sleep(10)
        status = gql(url, """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status } } }""", {"id": backfill})["partitionBackfillOrError"]["status"]
        runs = backfill_runs(url, backfill)
        counts: dict[str, int] = {}
        for run in runs:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        print(f"{time.monotonic() - started:6.0f} s  backfill {status:18} runs {counts}", flush=True)
        if status.startswith("COMPLETED") or status in ("FAILED", "CANCELED"):
            if not counts.get("STARTED") and not counts.get("QUEUED") and not counts.get("STARTING"):
                break
    elapsed = time.monotonic() - started
    report(runs, elapsed, prefix, len(days), home)
    return 0 if status == "COMPLETED_SUCCESS" else 1


def report(runs: list[dict], elapsed: float, prefix: str, days: int, home: Path) -> None:
    import dagster as dg

    from pendo_assets.defs.assets import COUNT_CHECK

    run_seconds = [r["endTime"] - r["startTime"] for r in runs if r["startTime"] and r["endTime"]]
    step_seconds = [sum((s["endTime"] or 0) - (s["startTime"] or 0) for s in r["stepStats"]) for r in runs]
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey([prefix, "allevents"]), COUNT_CHECK), limit=10 * days)
    recorded = {h.partition for h in history if h.status.value == "SUCCEEDED"}
    print(f"\n{days} days in {elapsed / 60:.1f} min with {len(runs)} runs (target <= 20 min)")
    if run_seconds:
        print(f"per run: {sum(run_seconds) / len(run_seconds):.1f} s from start to end, of which the loading step "
              f"{sum(step_seconds) / len(step_seconds):.1f} s; the rest is the run worker's start-up and "
              "bookkeeping (process launch, imports, loading the code location)")
    print(f"runs waited in the queue for the warehouse pool, so wall time ~ sum of run times / 1: "
          f"{sum(run_seconds) / 60:.1f} min of run time")
    print(f"allevents count check: {len(recorded)} of {days} days have their own SUCCEEDED result")


def backfill_runs(url: str, backfill: str) -> list[dict]:
    return gql(url, """query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results {
        runId status startTime endTime stepStats { startTime endTime } } } } }""",
               {"t": [{"key": "dagster/backfill", "value": backfill}]})["runsOrError"]["results"]


def wait_for_server(url: str) -> None:
    for _ in range(120):
        try:
            gql(url, "{ version }")
            return
        except OSError:
            time.sleep(1)
    raise SystemExit("dagster dev did not start within 2 minutes")


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(url, json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     {"content-type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=60))
    if "errors" in answer:
        raise SystemExit(f"GraphQL error: {answer['errors']}")
    return answer["data"]


if __name__ == "__main__":
    sys.exit(main())
