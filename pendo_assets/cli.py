"""`pendo-datasync`: sync exports headlessly, generate synthetic exports, list discovered apps.

A mistake the user can fix (a setting, a path, a busy warehouse) ends in one `pendo-datasync: <message>`
line on stderr and exit status 2; `--debug` or PENDO_DEBUG=1 show the traceback instead.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

from pendo_assets.errors import UserError
from pendo_assets.settings import DEFAULT_DAGSTER_HOME, ENVIRONMENT, Settings, debug_requested

# Dagster warns about partitioned asset checks once per app every time definitions are built. A "once"
# warnings filter cannot hold the repeats back: Dagster's own warnings.catch_warnings() blocks reset the
# registry it relies on, so the repeats are dropped where warnings are shown instead.
CHECK_PARTITIONS_PREVIEW = re.compile(
    r"Specifying a partitions_def on an AssetCheckSpec is currently in preview")
_check_partitions_preview_shown = False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser(with_generate_arguments="generate" in argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    with check_partitions_preview_shown_once():
        try:
            return args.run(args)
        except UserError as error:
            if args.debug or debug_requested():
                raise
            print(f"pendo-datasync: {error}", file=sys.stderr)
            return 2


@contextmanager
def check_partitions_preview_shown_once() -> Iterator[None]:
    """Show Dagster's preview warning about partitioned asset checks at most once per process; every other
    warning shows as before."""
    show_before = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        global _check_partitions_preview_shown
        if _is_check_partitions_preview(message, category):
            if _check_partitions_preview_shown:
                return
            _check_partitions_preview_shown = True
        show_before(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = show_before


def _is_check_partitions_preview(message: Warning | str, category: type[Warning]) -> bool:
    # The message is matched first, so that `apps` and plain errors never pay for importing dagster.
    if not CHECK_PARTITIONS_PREVIEW.match(str(message)):
        return False
    from dagster import PreviewWarning

    return issubclass(category, PreviewWarning)


def _parser(with_generate_arguments: bool = True) -> argparse.ArgumentParser:
    """`with_generate_arguments`: the generate command's arguments list the scenario library, which takes a
    sixth of an idle sync's time to import, so a command line that does not name generate leaves them out."""
    environment = {**ENVIRONMENT,
                   "DAGSTER_HOME": f"Dagster instance that records runs (default ./{DEFAULT_DAGSTER_HOME})"}
    width = max(map(len, environment)) + 2
    env_help = "\n".join(f"  {name:{width}} {text}" for name, text in environment.items())
    parser = argparse.ArgumentParser(
        prog="pendo-datasync", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load Pendo Data Sync exports into a warehouse, exactly as Pendo means them.",
        epilog=f"environment (flags override them):\n{env_help}")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks instead of one-line messages (env PENDO_DEBUG=1)")
    commands = parser.add_subparsers(title="commands", dest="command")

    sync = commands.add_parser(
        "sync", help="load every new export of every discovered app, then print a summary",
        description="Do what the manifest sensors and the runs they request would do, for every app under "
                    "the export root, in this process. Runs are recorded in the Dagster instance at "
                    "DAGSTER_HOME, so the UI shows them. Exits 1 when any load or blocking check fails, 2 on "
                    "a setting or path that cannot work.")
    _location_flags(sync)
    sync.set_defaults(run=run_sync)

    apps = commands.add_parser("apps", help="list the apps, and the visitor and account exports, found under the "
                                            "export root")
    _location_flags(apps)
    apps.set_defaults(run=run_apps)

    generate = commands.add_parser(
        "generate", help="write synthetic Data Sync exports (for the demo, tests and evaluation)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    if with_generate_arguments:
        from pendo_assets.generator import add_generate_arguments, run_generate

        add_generate_arguments(generate)
        _debug_flag(generate)
        generate.set_defaults(run=run_generate)
    return parser


def _location_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exports", metavar="ROOT", help="export root holding datasync/ (env PENDO_EXPORTS)")
    parser.add_argument("--warehouse", metavar="URL",
                        help="DuckDB file (or duckdb:///abs/path), or snowflake://<user>@<account>/<database>"
                             "?warehouse=<wh>&role=<role> with the secret in SNOWFLAKE_PASSWORD or "
                             "SNOWFLAKE_PRIVATE_KEY[_PATH], to load into (env PENDO_WAREHOUSE)")
    _debug_flag(parser)


def _debug_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: when absent here, the top-level --debug (before the command) keeps its value.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks instead of one-line messages (env PENDO_DEBUG=1)")


def run_apps(args: argparse.Namespace) -> int:
    from pendo_assets.defs.resources import open_exports
    from pendo_assets.pendo.discovery import discover_metadata, find_apps, no_apps_yet

    settings = Settings.from_env(exports=args.exports, warehouse=args.warehouse)
    store = open_exports(settings.exports)
    apps = list(settings.apps) or find_apps(store)
    for app in apps:
        print(f"{app.subscription_id}\t{app.application_id}\t{app.schema_name}")
    for location in discover_metadata(store, {a.subscription_id for a in settings.apps} if settings.apps else None):
        print(f"{location.subscription_id}\t{location.kind.folder}\t{location.schema_name}")
    if not apps:
        print(no_apps_yet(settings.exports), file=sys.stderr)
    return 0


def run_sync(args: argparse.Namespace) -> int:
    from pendo_assets.defs.resources import open_exports
    from pendo_assets.pendo.discovery import find_apps, no_apps_yet
    from pendo_assets.sync import print_summary, sync

    settings = Settings.from_env(exports=args.exports, warehouse=args.warehouse)
    if not settings.apps and not find_apps(open_exports(settings.exports)):
        print(no_apps_yet(settings.exports))
        return 0
    summary = sync(settings)
    print_summary(summary)
    return 1 if summary.failures or summary.checks_failed else 0


if __name__ == "__main__":
    sys.exit(main())
