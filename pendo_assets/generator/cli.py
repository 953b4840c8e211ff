"""The `pendo-datasync generate` command."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from pendo_assets.generator.generation import DEFAULT_BUCKET, DEFAULT_SEED, generate
from pendo_assets.generator.scenarios import SCENARIOS


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    scenario_help = "; ".join(f"{name}: {scenario.description}" for name, scenario in SCENARIOS.items())
    parser.add_argument("--out", type=Path, default=Path("./data/exports"),
                        help="folder that plays the bucket root; exports go under <out>/datasync/ "
                             "(default: ./data/exports)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="demo",
                        help=f"what to simulate (default: demo). {scenario_help}")
    parser.add_argument("--end-day", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="day of the last export; it carries the day before (default: today, UTC)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="write the bucket as it looked after that day's exports (default: the end day)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of every random choice; same seed, same bytes (default: {DEFAULT_SEED})")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET,
                        help=f"bucket name written into the manifests' rootUrl (default: {DEFAULT_BUCKET})")


def run_generate(args: argparse.Namespace) -> int:
    try:
        result = generate(scenario=args.scenario, out_dir=args.out, end_day=args.end_day, seed=args.seed,
                          as_of=args.as_of, bucket=args.bucket)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote scenario '{args.scenario}' under {result.out_dir}:")
    for app in result.apps:
        print(f"  subscription {app.subscription_id} app {app.application_id}: "
              f"{app.published_exports} exports published ({app.newly_written_exports} new), "
              f"{app.manifest_exports} in the manifest, {app.files} files, {app.event_rows} event rows")
        print(f"    manifest: {app.manifest_path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pendo_assets.generator",
                                     description="Write synthetic Pendo Data Sync exports.")
    add_generate_arguments(parser)
    return run_generate(parser.parse_args())
