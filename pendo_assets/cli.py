"""`pendo-datasync`: sync exports headlessly, generate synthetic exports, list discovered apps."""

from __future__ import annotations

import argparse
import sys

from pendo_assets.settings import DEFAULT_DAGSTER_HOME, ENVIRONMENT


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    from pendo_assets.generator import add_generate_arguments, run_generate

    env_help = "\n".join(f"  {name:24} {text}" for name, text in ENVIRONMENT.items())
    parser = argparse.ArgumentParser(
        prog="pendo-datasync", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load Pendo Data Sync exports into a warehouse, exactly as Pendo means them.",
        epilog=f"environment (flags override them):\n{env_help}\n"
               f"  {'DAGSTER_HOME':24} Dagster instance that records runs (default ./{DEFAULT_DAGSTER_HOME})")
    commands = parser.add_subparsers(title="commands", dest="command")

    sync = commands.add_parser(
        "sync", help="load every new export of every discovered app, then print a summary",
        description="Do what the manifest sensors and the runs they request would do, for every app under the "
                    "export root, in this process. Runs are recorded in the Dagster instance at DAGSTER_HOME, so "
                    "the UI shows them. Exits 1 when any load or blocking check fails.")
    _location_flags(sync)
    sync.set_defaults(run=run_sync)

    apps = commands.add_parser("apps", help="list the apps found under the export root")
    _location_flags(apps)
    apps.set_defaults(run=run_apps)

    generate = commands.add_parser(
        "generate", help="write synthetic Data Sync exports (for the demo, tests and evaluation)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(generate)
    generate.set_defaults(run=run_generate)
    return parser


def _location_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exports", metavar="ROOT", help="export root holding datasync/ (env PENDO_EXPORTS)")
    parser.add_argument("--warehouse", metavar="PATH", help="DuckDB file to load into (env PENDO_WAREHOUSE)")


def run_apps(args: argparse.Namespace) -> int:
    from pendo_assets.pendo.discovery import discover_apps
    from pendo_assets.settings import Settings
    from pendo_assets.stores import open_export_store

    settings = Settings.from_env(exports=args.exports, warehouse=args.warehouse)
    apps = discover_apps(open_export_store(settings.exports))
    for app in apps:
        print(f"{app.subscription_id}\t{app.application_id}\t{app.schema_name}")
    if not apps:
        print(f"no datasync/<subscription>/<app>/exportmanifest.json under {settings.exports}", file=sys.stderr)
    return 0


def run_sync(args: argparse.Namespace) -> int:
    from pendo_assets.settings import Settings
    from pendo_assets.sync import print_summary, sync

    settings = Settings.from_env(exports=args.exports, warehouse=args.warehouse)
    summary = sync(settings)
    print_summary(summary)
    return 1 if summary.failures or summary.checks_failed else 0


if __name__ == "__main__":
    sys.exit(main())
