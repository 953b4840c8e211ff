"""`pendo-datasync`: sync exports headlessly, generate synthetic exports, list discovered apps."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pendo_assets.settings import ENVIRONMENT

DEFAULT_DAGSTER_HOME = ".dagster_home"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class TableSummary:
    days: set[str] = field(default_factory=set)
    rows: int = 0
    checks_passed: int = 0
    checks_failed: int = 0


@dataclass
class SyncSummary:
    tables: dict[tuple[str, str], TableSummary] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    runs: int = 0

    def table(self, app: str, table: str) -> TableSummary:
        return self.tables.setdefault((app, table), TableSummary())

    @property
    def checks_failed(self) -> int:
        return sum(t.checks_failed for t in self.tables.values())


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

    settings = Settings.from_env(exports=args.exports, warehouse=args.warehouse)
    summary = sync(settings)
    print_summary(summary)
    return 1 if summary.failures or summary.checks_failed else 0


def sync(settings) -> SyncSummary:
    import dagster as dg

    from pendo_assets.sync_lock import exclusive_sync, fail_orphaned_sync_runs

    home = ensure_dagster_home()
    with exclusive_sync(home), dg.DagsterInstance.get() as instance:
        for message in fail_orphaned_sync_runs(instance):
            print(f"recovered: {message}")
        return _sync_locked(settings, instance)


def _sync_locked(settings, instance) -> SyncSummary:
    from pendo_assets.defs.pending import pending_work
    from pendo_assets.definitions import build_app_assets_for, build_definitions
    from pendo_assets.loading.loader import LoadError, read_manifest
    from pendo_assets.stores import open_export_store
    from pendo_assets.sync_lock import sync_run_tags

    partitions, apps = build_app_assets_for(settings)
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    store = open_export_store(settings.exports)
    summary = SyncSummary()
    print(f"exports:   {settings.exports}\nwarehouse: {settings.warehouse}\ndagster:   {os.environ['DAGSTER_HOME']}")
    if not apps:
        summary.failures.append(f"no apps found under {settings.exports} (expected datasync/<sub>/<app>/"
                                "exportmanifest.json); run `pendo-datasync generate` for demo exports")
    for app_assets in apps:
        label = app_assets.prefix
        try:
            manifest = read_manifest(store, app_assets.app)
        except LoadError as exc:
            summary.failures.append(str(exc))
            continue
        work = pending_work(app_assets, manifest.exports, partitions, instance)
        requests = work.run_requests()
        print(f"{app_assets.app.label}: {len(manifest.exports)} export(s) in the manifest, {len(requests)} run(s) to do")
        warning = work.outside_partitions_warning()
        if warning:
            print(f"  warning: {warning}")
        for request in requests:
            result = job.execute_in_process(
                instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
                tags={**request.tags, **sync_run_tags()}, run_config=QUIET_RUN_CONFIG,
                raise_on_error=False)
            summary.runs += 1
            _record(summary, label, instance, result)
    return summary


def _record(summary: SyncSummary, app: str, instance, result) -> None:
    """Count from the instance, which keeps every day's events even when a later day failed the step."""
    for materialization in run_materializations(instance, result.run_id):
        table = summary.table(app, materialization.asset_key.path[-1].upper())
        row_count = materialization.metadata.get("dagster/row_count")
        rows = row_count.value if row_count is not None else 0
        if materialization.partition is None:
            table.rows = rows
        else:
            table.days.add(materialization.partition)
            table.rows += rows
    for evaluation in run_check_evaluations(instance, result.run_id):
        table = summary.table(app, evaluation.asset_key.path[-1].upper())
        if evaluation.passed:
            table.checks_passed += 1
        else:
            table.checks_failed += 1
    summary.failures.extend(step_failures(result))


def run_materializations(instance, run_id: str) -> list:
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return [r.event_log_entry.dagster_event.step_materialization_data.materialization for r in records]


def run_check_evaluations(instance, run_id: str) -> list:
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def step_failures(result) -> list[str]:
    """The messages of failed steps, unwrapped to the error the pipeline raised."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            messages.append(error.message.strip())
    return messages


def print_summary(summary: SyncSummary) -> None:
    """Per app and table: days (re)loaded, rows they now hold, and count checks passed and failed."""
    width = max([len(app) for app, _ in summary.tables] + [3])
    print(f"\n{'app':{width}} {'table':24} {'days':>5} {'rows':>10} {'checks ok':>9} {'failed':>6}")
    for (app, table), t in sorted(summary.tables.items()):
        days = str(len(t.days)) if t.days else "-"
        print(f"{app:{width}} {table:24} {days:>5} {t.rows:>10,} {t.checks_passed:>9} {t.checks_failed:>6}")
    if not summary.tables:
        print("nothing to load: every export in the manifests is already loaded")
    print(f"\n{summary.runs} run(s); {len(summary.failures)} failure(s)")
    for failure in summary.failures:
        print(f"FAILED: {failure}")


def ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME, or ./.dagster_home, with the project's instance settings (one warehouse slot)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        with resources.as_file(resources.files("pendo_assets") / "dagster.yaml") as template:
            shutil.copyfile(template, config)
    return home


if __name__ == "__main__":
    sys.exit(main())
