"""The `pendo-datasync generate` command."""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import date
from pathlib import Path

from pendo_assets.generator.exports import DEFAULT_AZURE_ACCOUNT, DestinationKind
from pendo_assets.generator.generation import DEFAULT_BUCKET, DEFAULT_SEED, generate
from pendo_assets.generator.scenarios import SCENARIOS

DESCRIPTION = ("Write synthetic Pendo Data Sync exports: per app a manifest and export folders with "
               "bills of materials and Avro files, as Pendo writes them to a bucket, for the scenario's "
               "exports up to a chosen day. The same arguments always give the same bytes.")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(DESCRIPTION, width=100)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "scenarios:\n" + "\n".join(
        textwrap.fill(scenario.description, width=110, initial_indent=f"  {name:22}",
                      subsequent_indent=" " * 24, break_on_hyphens=False)
        for name, scenario in SCENARIOS.items())
    parser.add_argument("--out", default=Path("./data/exports"),
                        help="folder that plays the bucket root, or a bucket to write straight into "
                             "(gs://bucket/prefix, s3://..., az://container/...; credentials and endpoints "
                             "from the SDKs' environment); exports go under <out>/datasync/ "
                             "(default: ./data/exports)")
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="demo", metavar="NAME",
                        help="what to simulate, one of the scenarios listed below (default: demo)")
    parser.add_argument("--end-day", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="day of the scenario's last export (default: today, UTC)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="write the bucket as it looked after that day's exports; run again with later "
                             "days to watch the manifests change (default: the end day)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of every random choice; same seed, same bytes (default: {DEFAULT_SEED})")
    parser.add_argument("--events-per-day", type=int, default=None, metavar="N",
                        help="rows of every finalized day of every app, replacing the scenario's volume "
                             "(bench-day: 2,000,000 unless given); writes stream, so tens of millions work")
    parser.add_argument("--destination", choices=[kind.value for kind in DestinationKind], default=None,
                        help="cloud the manifests' rootUrl points at: gcs gives gs://<bucket>/..., s3 "
                             "gives s3://<bucket>/..., azure gives "
                             "https://<account>.blob.core.windows.net/<bucket>/... (default: the cloud of "
                             "a bucket --out, else gcs)")
    parser.add_argument("--bucket", default=None,
                        help=f"bucket (Azure: container) named in rootUrl (default: the bucket of a bucket "
                             f"--out, with its path, else {DEFAULT_BUCKET})")
    parser.add_argument("--azure-account", default=None, metavar="NAME",
                        help=f"Azure storage account named in rootUrl with --destination azure (default: "
                             f"the account an az:// --out writes to, else {DEFAULT_AZURE_ACCOUNT})")


def run_generate(args: argparse.Namespace) -> int:
    """The command prints counts only, so it never computes the event-id truth the tests use."""
    try:
        result = generate(scenario=args.scenario, out_dir=args.out, end_day=args.end_day, seed=args.seed,
                          as_of=args.as_of, bucket=args.bucket, destination=args.destination,
                          azure_account=args.azure_account, events_per_day=args.events_per_day,
                          with_truth=False)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a bucket that is missing, unreachable or refuses the credentials
        print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
        return 2
    print(f"Wrote scenario '{args.scenario}' under {result.out_dir}:")
    for app in result.apps:
        print(f"  subscription {app.subscription_id} app {app.application_id}: "
              f"{app.published_exports} exports published ({app.newly_written_exports} new), "
              f"{app.manifest_exports} in the manifest, {app.files} files, {app.event_rows} event rows")
        print(f"    manifest: {app.manifest_path}")
        for missing in app.missing_files:
            print(f"    listed but missing on purpose: export {missing.counter}, day {missing.day}: "
                  f"{missing.path}")
        for folder in app.uploading_folders:
            print(f"    still uploading, not in the manifest: {folder}")
    for subscription in result.subscriptions:
        print(f"  subscription {subscription.subscription_id} visitors and accounts:")
        print(f"    manifests: {subscription.visitor_manifest_path}, {subscription.account_manifest_path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pendo_assets.generator")
    add_generate_arguments(parser)
    return run_generate(parser.parse_args())
