"""Snowflake benchmark: the 2M-event day loaded through Snowflake's staged path and by the DuckDB pipeline, in one run.

The staged path is what loads Snowflake when no external stage names the bucket: `load_day` decodes the
Avro files, writes the rows as Parquet parts of at most STAGED_PART_ROWS, PUTs each to a temporary stage and
COPYs them in. Here it loads into a local fakesnow server (one for the run, started and stopped by PID, as in
the tests), each round into a fresh database; the DuckDB pipeline loads each round into a fresh file. Every
load runs in its own process (so peak RSS is its own), in interleaved rounds, reported by its median round
with the spread; the timed block is `load_day` alone, with every library already imported. Each load's rows
are counted back from the warehouse and must equal the day's manifest.

fakesnow is not Snowflake: it runs the COPY (and holds the loaded rows) in its own in-memory DuckDB, work that
Snowflake's cloud would do. Its CPU and memory are measured from /proc beside the loader's, not in it.

Usage: python -m benchmarks.snowflake [--rows 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import input_tree, median_round
from pendo_assets.warehouse.snowflake_config import NETWORK_TIMEOUT_SECONDS, PASSWORD_VARIABLE, SECRET_VARIABLES

ROOT = Path(__file__).resolve().parent
DUCKDB, STAGED = "duckdb", "staged"
LABELS = {DUCKDB: "DuckDB pipeline", STAGED: "Snowflake staged"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="events in the day (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every path; the median is reported")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = input_tree(args.rows)
    if args.child:
        return load(args.child, root)

    from pendo_assets_tests.snowflake_server import PASSWORD, start_fakesnow

    # The child logs in as the product does, with the password from the environment and no key that would win.
    staged_env = {PASSWORD_VARIABLE: PASSWORD, **{name: None for name in SECRET_VARIABLES if name != PASSWORD_VARIABLE}}
    rounds: dict[str, list[dict]] = {DUCKDB: [], STAGED: []}
    with tempfile.TemporaryDirectory() as logs:
        server = start_fakesnow(Path(logs))
        try:
            print(f"fakesnow server PID {server.pid}: RSS {ServerUsage.now(server.pid).rss_mb:,.0f} MB at start",
                  flush=True)
            for number in range(args.repeat):
                rounds[DUCKDB].append(measure(args.rows, DUCKDB, {}))
                report_round(number, args.repeat, DUCKDB, rounds[DUCKDB][-1])
                database = server.create_database(f"bench_{number + 1}")
                # The product's own network timeout: the test default would cancel a COPY of millions of rows.
                location = server.url(database, network_timeout=NETWORK_TIMEOUT_SECONDS)
                before = ServerUsage.reset_peak(server.pid)
                result = measure(args.rows, location, staged_env)
                after = ServerUsage.now(server.pid)
                rounds[STAGED].append({**result, "server_cpu_seconds": after.cpu_seconds - before.cpu_seconds,
                                       "server_peak_rise_mb": after.peak_rss_mb - before.rss_mb,
                                       "server_rss_mb": after.rss_mb})
                report_round(number, args.repeat, STAGED, rounds[STAGED][-1])
        finally:
            server.stop()
    report({path: median_round(found) for path, found in rounds.items()}, rounds[STAGED])
    return 0


@dataclass(frozen=True)
class ServerUsage:
    """The fakesnow server's CPU time (all its threads), resident memory and its high-water mark, from /proc."""

    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float

    @classmethod
    def now(cls, pid: int) -> ServerUsage:
        # The fields after the command's closing parenthesis start at field 3 (state); utime and stime are 14, 15.
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return cls((int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
                   int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)

    @classmethod
    def reset_peak(cls, pid: int) -> ServerUsage:
        """Reset the high-water mark to the current RSS (Linux >= 4.0), so the next peak is one load's own."""
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return cls.now(pid)


def measure(rows: int, location: str, env: dict[str, str | None]) -> dict:
    """Run one load in its own process (cwd here, so it imports this tree); its result and its peak RSS."""
    child_env = {name: value for name, value in {**os.environ, **env}.items() if value is not None}
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.snowflake", "--rows", str(rows), "--child", location],
                               stdout=subprocess.PIPE, cwd=ROOT.parent, env=child_env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        path = DUCKDB if location == DUCKDB else STAGED
        raise SystemExit(f"the {LABELS[path]} load failed (status {status}); its error is above")
    return {**json.loads(output), "peak_rss_mb": usage.ru_maxrss / 1024}


def load(location: str, root: Path) -> int:
    """The child: load the day's four tables into `location` (a fresh DuckDB file, or a snowflake:// URL), timed,
    then count them back."""
    from benchmarks.load_method import Timer
    from pendo_assets.loading.loader import load_day, read_manifest
    from pendo_assets.pendo.avro import PERIOD_COLUMN
    from pendo_assets.pendo.discovery import discover_apps
    from pendo_assets.pendo.tables import EventTable
    from pendo_assets.stores.local import LocalExportStore
    from pendo_assets.warehouse.duckdb import DuckDBWarehouse
    from pendo_assets.warehouse.snowflake import SnowflakeWarehouse
    from pendo_assets.warehouse.snowflake_config import parse_snowflake_url

    store = LocalExportStore(root)
    (app,) = discover_apps(store)
    (entry,) = read_manifest(store, app).exports
    (period,) = entry.bom.periods
    expected = period.all_events.event_count + sum(m.event_count for m in period.matched_events)
    if location != DUCKDB:
        # Imported before the timer, as duckdb is above: a Dagster run has them loaded before its step starts, and
        # they take ~4 s here, which would otherwise count as the staged path's.
        import dagster_snowflake  # noqa: F401
    timer = Timer()
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = (DuckDBWarehouse(Path(scratch) / "bench.duckdb") if location == DUCKDB
                     else SnowflakeWarehouse(parse_snowflake_url(location)))
        with timer:
            loads = load_day(store, warehouse, app, period.day, list(EventTable), "benchmark")
        cpu_seconds = timer.cpu_seconds()
        with warehouse.session() as session:
            counted = sum(session.count(app.schema_name, table.value, {PERIOD_COLUMN: period.day})
                          for table in EventTable)
    reported = sum(result.rows for result in loads.values())
    if not expected == reported == counted:
        raise SystemExit(f"{location}: the manifest lists {expected:,} rows for {period.day}, load_day reported "
                         f"{reported:,}, and the warehouse holds {counted:,}")
    print(json.dumps({"seconds": timer.seconds, "cpu_seconds": cpu_seconds, "rows": counted}))
    return 0


def report_round(number: int, repeat: int, path: str, result: dict) -> None:
    server = (f"; fakesnow server +{result['server_cpu_seconds']:.1f} CPU s, RSS up to "
              f"+{result['server_peak_rise_mb']:,.0f} MB" if path == STAGED else "")
    # On a shared VM the load average says whether a slow round was this code or a neighbour.
    print(f"  round {number + 1}/{repeat} {LABELS[path]}: {result['seconds']:.2f} s, peak RSS "
          f"{result['peak_rss_mb']:,.0f} MB{server}; load average {os.getloadavg()[0]:.1f}", flush=True)


def report(results: dict[str, dict], staged_rounds: list[dict]) -> None:
    duckdb, staged = results[DUCKDB], results[STAGED]
    print(f"\n{duckdb['rows']:,} rows (allevents and matched) in each load; the loader process alone:")
    print(f"{'path':17} {'seconds':>8} {'min-max':>12} {'CPU s':>7} {'rows/s':>10} {'peak RSS MB':>12} "
          f"{'vs DuckDB':>10}")
    for path, result in results.items():
        spread = "{:.1f}-{:.1f}".format(*result["spread"])
        print(f"{LABELS[path]:17} {result['seconds']:>8.2f} {spread:>12} {result['cpu_seconds']:>7.1f} "
              f"{result['rows'] / result['seconds']:>10,.0f} {result['peak_rss_mb']:>12,.0f} "
              f"{result['seconds'] / duckdb['seconds']:>9.2f}x")
    print(f"\nstaged / DuckDB = {staged['seconds'] / duckdb['seconds']:.2f}x (median rounds); loader peak RSS "
          f"{staged['peak_rss_mb']:,.0f} MB staged, {duckdb['peak_rss_mb']:,.0f} MB DuckDB (max over rounds)")
    server_cpu = staged["server_cpu_seconds"]
    after_each = ", ".join(f"{r['server_rss_mb']:,.0f}" for r in staged_rounds)
    print(f"fakesnow server, which runs the COPY that Snowflake's cloud would: {server_cpu:.1f} CPU s in the median "
          f"round (loader and server together {staged['cpu_seconds'] + server_cpu:.1f}); its RSS rose by up to "
          f"{max(r['server_peak_rise_mb'] for r in staged_rounds):,.0f} MB during a load (max over rounds) and was "
          f"{after_each} MB after each, as it keeps every round's database in memory")

if __name__ == "__main__":
    sys.exit(main())
