"""Load-path benchmark: the machine's floors, the naive reference and the project's real code path, side by side.

Each method runs in a fresh process (so peak RSS is its own) on the same generated day:

  inflate      walk the Avro container and decompress every block, nothing else (floor)
  decode       the project's reader alone: every file to Arrow batches, written nowhere
  ingest       DuckDB inserting the day's rows from an Arrow table already in memory, commit + checkpoint (floor)
  naive        fastavro -> list of dicts -> pandas DataFrame -> DuckDB insert (what most people write)
  pipeline     pendo-datasync's load_day: ALLEVENTS and the three matched tables of that day, one transaction

Methods run in interleaved rounds (`--repeat`) and each is reported by its median round, with the spread:
on a shared VM the same run varies by 10-20 %.

Usage: python -m benchmarks.load [--rows 2000000 --rows 8000000] [--skip naive] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data"
END_DAY = date(2025, 6, 2)
METHODS = ("inflate", "decode", "ingest", "naive", "pipeline")
# The naive path holds every row as Python objects (~1.5 KB each): above this it would exhaust 24 GB.
NAIVE_MAX_EVENTS = 2_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="events in the day (repeatable; default 2,000,000)")
    parser.add_argument("--skip", action="append", default=[], choices=METHODS, help="leave a method out")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every method; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    results = []
    for rows in args.rows or [2_000_000]:
        root = input_tree(rows)
        methods = [m for m in METHODS if m not in args.skip and not (m == "naive" and rows > NAIVE_MAX_EVENTS)]
        if "naive" in METHODS and "naive" not in args.skip and "naive" not in methods:
            print(f"naive skipped at {rows:,} events: it would not fit in memory", flush=True)
        rounds: dict[str, list[dict]] = {m: [] for m in methods}
        for round_number in range(args.repeat):
            for method in methods:
                rounds[method].append(measure(method, root))
                print(f"  round {round_number + 1}/{args.repeat} {method}: {rounds[method][-1]['seconds']:.2f} s",
                      flush=True)
        for method in methods:
            results.append({"rows": rows, "method": method, **median_round(rounds[method])})
            print_row(results[-1], results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print_verdict(results)
    return 0


def input_tree(rows: int) -> Path:
    """Generate (once) the benchmark day with the project's own generator."""
    root = DATA / f"day-{rows}"
    if not (root / "done").exists():
        from pendo_assets.generator import generate

        started = time.monotonic()
        print(f"generating a {rows:,}-event day under {root} ...", flush=True)
        generate(scenario="bench-day", out_dir=root, end_day=END_DAY, events_per_day=rows, with_truth=False)
        (root / "done").write_text(f"{time.monotonic() - started:.1f} s\n")
    return root


def measure(method: str, root: Path) -> dict:
    """Run one method in its own process; returns its timing and the process's peak RSS."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.load_method", method, str(root)],
                               stdout=subprocess.PIPE, cwd=ROOT.parent)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{method} failed (status {status})")
    result = json.loads(output)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def median_round(rounds: list[dict]) -> dict:
    """The round of median wall time, with the fastest and slowest times beside it."""
    ordered = sorted(rounds, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "spread": [ordered[0]["seconds"], ordered[-1]["seconds"]],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds)}


def print_row(result: dict, results: list[dict]) -> None:
    if len(results) == 1 or results[-2]["rows"] != result["rows"]:
        print(f"\n{'rows':>10} {'method':9} {'seconds':>8} {'min-max':>12} {'CPU s':>7} {'rows/s':>10} {'MB/s':>7} "
              f"{'peak RSS MB':>12}")
    rate = result["rows"] / result["seconds"]
    spread = "{:.1f}-{:.1f}".format(*result["spread"])
    print(f"{result['rows']:>10,} {result['method']:9} {result['seconds']:>8.2f} {spread:>12} "
          f"{result['cpu_seconds']:>7.1f} {rate:>10,.0f} {result['file_mb'] / result['seconds']:>7.1f} "
          f"{result['peak_rss_mb']:>12,.0f}", flush=True)


def print_verdict(results: list[dict]) -> None:
    by = {(r["rows"], r["method"]): r for r in results}
    print()
    for rows in sorted({r["rows"] for r in results}):
        pipeline = by.get((rows, "pipeline"))
        if not pipeline:
            continue
        ingest, naive, decode = by.get((rows, "ingest")), by.get((rows, "naive")), by.get((rows, "decode"))
        if ingest:
            print(f"{rows:,} rows: pipeline / ingest floor = {pipeline['seconds'] / ingest['seconds']:.2f}x "
                  "(target <= 1.5x)")
        if ingest and decode:
            # Decoding and DuckDB's ingest both need CPU; no schedule beats their sum spread over every core.
            bound = max(decode["seconds"], (decode["cpu_seconds"] + ingest["cpu_seconds"]) / os.cpu_count())
            print(f"{rows:,} rows: decode + ingest CPU over {os.cpu_count()} cores = {bound:.1f} s at best "
                  f"= {bound / ingest['seconds']:.2f}x the ingest floor; pipeline {pipeline['seconds']:.1f} s "
                  f"= {pipeline['seconds'] / bound:.2f}x that bound")
        if naive:
            print(f"{rows:,} rows: naive / pipeline = {naive['seconds'] / pipeline['seconds']:.1f}x (target >= 6x)")
    sizes = sorted(r["rows"] for r in results if r["method"] == "pipeline")
    if len(sizes) > 1:
        small, large = by[(sizes[0], "pipeline")], by[(sizes[-1], "pipeline")]
        growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
        print(f"pipeline peak RSS {small['peak_rss_mb']:,.0f} MB at {sizes[0]:,} rows -> {large['peak_rss_mb']:,.0f} MB "
              f"at {sizes[-1]:,} rows: {growth:+.0%} (target <= 1.5 GB, growth <= 25%)")


if __name__ == "__main__":
    sys.exit(main())
