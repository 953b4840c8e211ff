"""The 2,000-matchable day: statements per load and seconds, into Snowflake (a local fakesnow server) by both paths.

A day matching thousands of Pages, Features and Track Events is where a load's statements can grow with
matchables instead of files. Each Snowflake statement is a round trip, and every one inside the day's transaction
holds its table's lock for longer. One export, one day: an all-events file plus one matched file per matchable
(`pendo_assets_tests.wide_day`). Loaded by `load_day` into a fresh fakesnow database through the staged path (the
rows decoded here, staged as Parquet and copied), and through the server-side path (COPY from a stage: a file://
stage over a Parquet mirror, as the tests use, since fakesnow reads no Avro); into a fresh DuckDB file for scale.
Every statement the product's cursor sends is counted, by kind, and those inside BEGIN..COMMIT.

Usage: python -m benchmarks.wide_day [--matchables 2000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DUCKDB, STAGED, SERVER_SIDE = "duckdb", "staged", "server-side"
LABELS = {DUCKDB: "DuckDB pipeline", STAGED: "Snowflake staged", SERVER_SIDE: "Snowflake server-side"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matchables", type=int, default=2000, help="matchables in the day (default 2,000)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every path; the median is reported")
    parser.add_argument("--paths", default=",".join(LABELS), help=f"comma-separated, of {', '.join(LABELS)}")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = sorted(set(paths) - set(LABELS))
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")

    from pendo_assets_tests.parquet_mirror import mirror_as_parquet
    from pendo_assets_tests.wide_day import wide_day, write_wide_day

    data = ROOT / ".data" / f"wide-day-{args.matchables}"
    exports, mirror = data / "exports", data / "mirror"
    if not (data / "done").exists():
        print(f"writing the {args.matchables:,}-matchable day under {data} (once)", flush=True)
        write_wide_day(exports, args.matchables)
        mirror_as_parquet(exports, mirror)
        (data / "done").write_text("")
    wide = wide_day(args.matchables)
    results = {path: [run(path, exports, mirror, wide) for _ in range(args.repeat)] for path in paths}
    report(args.matchables, wide, results)
    return 0


def run(path: str, exports: Path, mirror: Path, wide) -> dict:
    from pendo_assets.loading.loader import load_day
    from pendo_assets.pendo.tables import EventTable
    from pendo_assets.stores.local import LocalExportStore

    store = LocalExportStore(exports)
    with tempfile.TemporaryDirectory() as scratch:
        if path == DUCKDB:
            from pendo_assets.warehouse.duckdb import DuckDBWarehouse

            warehouse, server = DuckDBWarehouse(Path(scratch) / "wide.duckdb"), None
        else:
            warehouse, server = snowflake_warehouse(path, mirror, Path(scratch))
        try:
            started = time.perf_counter()
            loaded = load_day(store, warehouse, wide.app, wide.day, list(EventTable), "bench-wide-day")
            seconds = time.perf_counter() - started
        finally:
            if server is not None:
                server.stop()
    rows = {table.value: result.rows for table, result in loaded.items()}
    assert rows == {table.value: count for table, count in wide.rows_per_table.items()}, rows
    print(f"{LABELS[path]}: {seconds:.1f} s", flush=True)
    return {"seconds": seconds, **(count_statements(warehouse.statements) if server is not None else {})}


def snowflake_warehouse(path: str, mirror: Path, scratch: Path):
    """A fresh fakesnow server and database, and the product's Snowflake warehouse on it, recording every statement
    the connector sends (its own included: a PUT to a GCS-like stage, as fakesnow's are, is sent twice)."""
    import os

    from pendo_assets.warehouse.snowflake_config import NETWORK_TIMEOUT_SECONDS, PASSWORD_VARIABLE, SECRET_VARIABLES
    from pendo_assets_tests.parquet_mirror import create_mirror_stage
    from pendo_assets_tests.snowflake_recording import RecordingWarehouse
    from pendo_assets_tests.snowflake_server import PASSWORD, start_fakesnow

    for name in SECRET_VARIABLES:
        os.environ.pop(name, None)
    os.environ[PASSWORD_VARIABLE] = PASSWORD
    server = start_fakesnow(scratch)
    database = server.create_database("bench_wide_day")
    from pendo_assets.warehouse.snowflake_config import parse_snowflake_url

    target = parse_snowflake_url(server.url(database, network_timeout=NETWORK_TIMEOUT_SECONDS))
    if path == SERVER_SIDE:
        warehouse = RecordingWarehouse(target, stage=create_mirror_stage(server, database, mirror),
                                       stage_file_format="PARQUET")
    else:
        warehouse = RecordingWarehouse(target)
    return warehouse, server


def count_statements(statements: list[str]) -> dict:
    """Statements by kind, and how many ran inside a transaction (between BEGIN and COMMIT or ROLLBACK)."""
    counts = {"statements": len(statements), "copies": 0, "puts": 0, "in_transaction": 0}
    inside = False
    for sql in statements:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        counts["copies"] += word == "COPY"
        counts["puts"] += word == "PUT"
        if word in ("COMMIT", "ROLLBACK"):
            inside = False
        counts["in_transaction"] += inside
        if word == "BEGIN":
            inside = True
    return counts


def report(matchables: int, wide, results: dict[str, list[dict]]) -> None:
    files = sum(wide.files_per_table.values())
    print(f"\nThe {matchables:,}-matchable day: {files:,} files, {wide.events:,} events "
          f"({sum(wide.rows_per_table.values()):,} rows in 4 tables); median of {len(next(iter(results.values())))} "
          "round(s)")
    print(f"{'path':24} {'seconds':>8} {'statements':>11} {'COPY':>6} {'PUT':>6} {'in txn':>7}")
    summary = {}
    for path, rounds in results.items():
        median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        summary[path] = median
        counts = [f"{median[k]:>{w},.0f}" if k in median else f"{'-':>{w}}"
                  for k, w in (("statements", 11), ("copies", 6), ("puts", 6), ("in_transaction", 7))]
        print(f"{LABELS[path]:24} {median['seconds']:>8.1f} {' '.join(counts)}")
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / f"wide_day_{matchables}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
