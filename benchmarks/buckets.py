"""Bucket benchmark: the 2M-event day loaded from emulated GCS and S3 buckets and from local disk, in one run.

fake-gcs-server and moto_server run on loopback (started and stopped by PID, as in the tests); the day is
uploaded to each once. Every load runs `load_day` in its own process (so peak RSS is its own), in
interleaved rounds, and is reported by its median round with the spread. Targets: a bucket load takes at
most 1.3x the local one, and peak RSS stays within 1.5 GB. An emulator on loopback is not the cloud: the
numbers measure the store's own overhead (block size, read-ahead, pinned ranged reads), not a network.

Usage: python -m benchmarks.buckets [--rows 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The tests' and benchmark's own fsspec clients (uploads) otherwise probe an emulator for 60 s per bucket;
# the product's store uses gcsfs's plain filesystem and never probes.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from benchmarks.load import input_tree, median_round  # noqa: E402
from pendo_assets.generator.generation import DEFAULT_BUCKET  # noqa: E402

ROOT = Path(__file__).resolve().parent
SOURCES = ("local", "gcs", "s3")
TARGET_RATIO, TARGET_RSS_MB = 1.3, 1536


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="events in the day (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every source; the median is reported")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return load(args.child)

    from pendo_assets_tests.servers import start_fake_gcs, start_moto

    local = input_tree(args.rows)
    with tempfile.TemporaryDirectory() as logs:
        servers = {"gcs": start_fake_gcs(Path(logs)), "s3": start_moto(Path(logs))}
        try:
            roots = {"local": (str(local), {})}
            for name, server in servers.items():
                bucket = DEFAULT_BUCKET  # the bucket the generated rootUrls name; each server is new
                server.filesystem().mkdir(bucket)
                started = time.monotonic()
                server.upload_tree(local, server.url(bucket))
                print(f"uploaded the day to {name} in {time.monotonic() - started:.1f} s", flush=True)
                roots[name] = (server.url(bucket), server.env)
            rounds: dict[str, list[dict]] = {source: [] for source in SOURCES}
            for number in range(args.repeat):
                for source in SOURCES:
                    rounds[source].append(measure(*roots[source]))
                    print(f"  round {number + 1}/{args.repeat} {source}: {rounds[source][-1]['seconds']:.2f} s, "
                          f"peak RSS {rounds[source][-1]['peak_rss_mb']:,.0f} MB", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    report({source: median_round(found) for source, found in rounds.items()})
    return 0


def measure(root: str, env: dict[str, str]) -> dict:
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.buckets", "--child", root],
                               stdout=subprocess.PIPE, cwd=ROOT.parent, env={**os.environ, **env})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"the load from {root} failed (status {status})")
    return {**json.loads(output), "peak_rss_mb": usage.ru_maxrss / 1024}


def load(root: str) -> int:
    """The child: load the day's four tables from `root` into a fresh DuckDB file, timed."""
    from benchmarks.load_method import Timer
    from pendo_assets.defs.resources import open_exports
    from pendo_assets.loading.loader import load_day, read_manifest
    from pendo_assets.pendo.discovery import discover_apps
    from pendo_assets.pendo.tables import EventTable
    from pendo_assets.warehouse.duckdb import DuckDBWarehouse

    store = open_exports(root)
    (app,) = discover_apps(store)
    (entry,) = read_manifest(store, app).exports
    (period,) = entry.bom.periods
    timer = Timer()
    with tempfile.TemporaryDirectory() as scratch:
        with timer:
            loads = load_day(store, DuckDBWarehouse(Path(scratch) / "bench.duckdb"), app, period.day,
                             list(EventTable), "benchmark")
    print(json.dumps({"seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds(),
                      "rows": sum(result.rows for result in loads.values())}))
    return 0


def report(results: dict[str, dict]) -> None:
    local = results["local"]
    print(f"\n{'source':8} {'seconds':>8} {'min-max':>12} {'CPU s':>7} {'rows/s':>10} {'peak RSS MB':>12} {'vs local':>9}")
    for source, result in results.items():
        spread = "{:.1f}-{:.1f}".format(*result["spread"])
        print(f"{source:8} {result['seconds']:>8.2f} {spread:>12} {result['cpu_seconds']:>7.1f} "
              f"{result['rows'] / result['seconds']:>10,.0f} {result['peak_rss_mb']:>12,.0f} "
              f"{result['seconds'] / local['seconds']:>8.2f}x")
    for source in ("gcs", "s3"):
        ratio = results[source]["seconds"] / local["seconds"]
        print(f"{source}: {ratio:.2f}x the local load (target <= {TARGET_RATIO}x), peak RSS "
              f"{results[source]['peak_rss_mb']:,.0f} MB (target <= {TARGET_RSS_MB:,} MB)")


if __name__ == "__main__":
    sys.exit(main())
