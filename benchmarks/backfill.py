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
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pendo_assets_tests.dagster_dev import (
    REPO, TERMINAL_BACKFILL_STATUSES, backfill_status, dagster_dev, launch_partition_backfill, runs, scratch_home)

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
        home = scratch_home(scratch / "dagster_home")
        env = {**os.environ, "DAGSTER_HOME": str(home), "PENDO_EXPORTS": str(scratch / "exports"),
               "PENDO_WAREHOUSE": str(scratch / "pendo.duckdb"), "PENDO_FIRST_DAY": days[0]}
        # The manifest sensor would load the same days at its first tick; stop it in the instance before
        # the daemon starts, so this measures a UI backfill alone.
        from pendo_assets.defs.assets import app_key_prefix
        from pendo_assets.pendo.tables import AppLocation

        sensor = f"{app_key_prefix(AppLocation(app.subscription_id, app.application_id))}_manifest"
        subprocess.run([sys.executable, "-m", "dagster", "sensor", "stop", sensor, "-w", "workspace.yaml"],
                       cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with dagster_dev(env, port=args.port) as url:
            return run_backfill(url, app, days, home)


def run_backfill(url: str, app, days: list[str], home: Path) -> int:
    from pendo_assets.defs.assets import app_key_prefix
    from pendo_assets.pendo.tables import AppLocation, EventTable

    prefix = app_key_prefix(AppLocation(app.subscription_id, app.application_id))
    started = time.monotonic()
    backfill = launch_partition_backfill(url, days, [[prefix, table.value.lower()] for table in EventTable])
    print(f"backfill {backfill}: {len(days)} days ({days[0]} .. {days[-1]}) of {prefix}", flush=True)
    while True:
        time.sleep(10)
        status = backfill_status(url, backfill)
        backfill_runs = runs(url, {"dagster/backfill": backfill})
        counts: dict[str, int] = {}
        for run in backfill_runs:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        print(f"{time.monotonic() - started:6.0f} s  backfill {status:18} runs {counts}", flush=True)
        if status in TERMINAL_BACKFILL_STATUSES:
            if not counts.get("STARTED") and not counts.get("QUEUED") and not counts.get("STARTING"):
                break
    elapsed = time.monotonic() - started
    report(backfill_runs, elapsed, prefix, len(days), home)
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


if __name__ == "__main__":
    sys.exit(main())
