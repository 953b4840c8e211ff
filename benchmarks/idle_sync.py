"""Idle-sync benchmark: `pendo-datasync sync` into DuckDB when there is nothing to load.

A scheduled sync mostly finds nothing new, so its cost is the program's own start-up: imports, the Dagster
instance, planning every app against the warehouse. The `small` scenario is generated once into
benchmarks/.data; each invocation loads it into a fresh DuckDB file and Dagster instance with one sync, then
times `--repeat` further syncs, each the real CLI in its own process, each of which must find nothing to load.
Reports their median, min and max wall time and their median CPU time, and then, from one more such sync under
`python -X importtime`, the time spent importing and the top-level packages whose modules took longest.
Target: <= 3 s on the project's 2-core machine.

Results are also written to benchmarks/results/idle_sync.json.

Usage: python -m benchmarks.idle_sync [--repeat 5] [--imports 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DATA = ROOT / ".data"
RESULTS = ROOT / "results"
END_DAY = date(2025, 6, 2)
TARGET_SECONDS = 3.0
NOTHING_TO_LOAD = "nothing to load"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="idle syncs timed (default 5)")
    parser.add_argument("--imports", type=int, default=10, metavar="N",
                        help="show the N packages slowest to import in one more idle sync (default 10; 0 skips it)")
    args = parser.parse_args()
    exports = input_tree()
    with tempfile.TemporaryDirectory() as scratch:
        env = sync_environment(exports, Path(scratch))
        first = timed_sync(env)
        if NOTHING_TO_LOAD in first.output:
            raise SystemExit(f"the first sync loaded nothing; is {exports} empty?\n{first.output}")
        print(f"first sync (loads the small scenario): {first.seconds:.2f} s", flush=True)
        rounds = []
        for number in range(args.repeat):
            idle = timed_sync(env)
            if NOTHING_TO_LOAD not in idle.output:
                raise SystemExit(f"idle sync {number + 1} found work to do:\n{idle.output}")
            rounds.append(idle)
            # On a shared VM the load average says whether a slow round was this code or a neighbour.
            print(f"  idle sync {number + 1}/{args.repeat}: {idle.seconds:.2f} s, {idle.cpu_seconds:.2f} CPU s; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        import_seconds = import_times_by_package(env) if args.imports else {}
    wall = [idle.seconds for idle in rounds]
    result = {"median_seconds": statistics.median(wall), "min_seconds": min(wall), "max_seconds": max(wall),
              "median_cpu_seconds": statistics.median(idle.cpu_seconds for idle in rounds), "rounds": wall,
              "first_sync_seconds": first.seconds, "target_seconds": TARGET_SECONDS,
              "import_seconds": sum(import_seconds.values()),
              "slowest_packages": [{"package": package, "seconds": seconds} for package, seconds
                                   in sorted(import_seconds.items(), key=lambda item: -item[1])[:args.imports]]}
    report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idle_sync.json").write_text(json.dumps(result, indent=2))
    return 0


def input_tree() -> Path:
    """Generate (once) the small scenario with the project's own generator."""
    root = DATA / "idle-sync"
    if not (root / "done").exists():
        from pendo_assets.generator import generate

        print(f"generating the small scenario under {root} ...", flush=True)
        generate(scenario="small", out_dir=root / "exports", end_day=END_DAY, with_truth=False)
        (root / "done").write_text("generated\n")
    return root / "exports"


def sync_environment(exports: Path, scratch: Path) -> dict[str, str]:
    """This checkout's code, the generated exports, and a warehouse and Dagster instance of the run's own."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, "PENDO_EXPORTS": str(exports),
            "PENDO_WAREHOUSE": str(scratch / "pendo.duckdb"), "PENDO_FIRST_DAY": "2024-01-01",
            "DAGSTER_HOME": str(scratch / "dagster_home")}


class Sync(NamedTuple):
    seconds: float
    cpu_seconds: float
    output: str


def timed_sync(env: dict[str, str], *python_options: str) -> Sync:
    """One `pendo-datasync sync` in a process of its own, the way a user or a scheduler starts it. Its CPU time
    says what the wall time would be on an idle machine, when other programs share the cores."""
    command = ([sys.executable, *python_options, "-m", "pendo_assets.cli"] if python_options
               else [str(Path(sys.executable).parent / "pendo-datasync")])
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    process = subprocess.run([*command, "sync"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"sync failed (status {process.returncode}):\n{process.stdout}{process.stderr}")
    return Sync(seconds, children_cpu_seconds() - cpu_before, process.stdout + process.stderr)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_times_by_package(env: dict[str, str]) -> dict[str, float]:
    """Seconds each top-level package's modules took to import in one idle sync: each module's own time (not
    what it imported), summed per package, so the figures add up to the sync's whole import time."""
    sync = timed_sync(env, "-X", "importtime")
    if NOTHING_TO_LOAD not in sync.output:
        raise SystemExit(f"the sync under -X importtime found work to do:\n{sync.output}")
    packages: dict[str, float] = {}
    for line in sync.output.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # not an importtime line, or its header
        package = fields[2].strip().split(".")[0]
        packages[package] = packages.get(package, 0.0) + int(fields[0]) / 1e6
    return packages


def report(result: dict) -> None:
    holds = result["median_seconds"] <= TARGET_SECONDS
    print(f"\nidle sync into DuckDB over {len(result['rounds'])} run(s): median {result['median_seconds']:.2f} s, "
          f"min {result['min_seconds']:.2f} s, max {result['max_seconds']:.2f} s (target <= {TARGET_SECONDS:.0f} s: "
          f"{'holds' if holds else 'MISSED'}); median CPU time {result['median_cpu_seconds']:.2f} s")
    if result["slowest_packages"]:
        print(f"one more idle sync under python -X importtime spent {result['import_seconds']:.2f} s importing; "
              "the packages whose modules took longest:")
        for entry in result["slowest_packages"]:
            print(f"  {entry['seconds']:6.2f} s  {entry['package']}")


if __name__ == "__main__":
    sys.exit(main())
