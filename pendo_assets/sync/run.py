"""Plan every app's pending work and execute it as Dagster runs recorded in the instance at DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import dagster as dg

from pendo_assets.errors import UserError
from pendo_assets.settings import DEFAULT_DAGSTER_HOME, Settings
from pendo_assets.sync.lock import exclusive_sync, fail_orphaned_sync_runs, run_ended, sync_run_tags
from pendo_assets.sync.summary import SyncSummary

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class OnDemandInstance:
    """The Dagster instance at DAGSTER_HOME, opened the first time a sync needs it: opening one costs about a second,
    and a sync with nothing to load and nothing to recover needs none."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._instance: dg.DagsterInstance | None = None

    def __call__(self) -> dg.DagsterInstance:
        if self._instance is None:
            self._instance = self._stack.enter_context(dg.DagsterInstance.get())
        return self._instance

    def __enter__(self) -> "OnDemandInstance":
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()


def sync(settings: Settings) -> SyncSummary:
    home = ensure_dagster_home()
    with exclusive_sync(home) as previous, OnDemandInstance() as instance:
        if not previous.finished:  # it was killed: its runs may still read as running, holding pool slots
            for message in fail_orphaned_sync_runs(instance()):
                print(f"recovered: {message}")
        return _sync_locked(settings, instance)


def _sync_locked(settings: Settings, instance: OnDemandInstance) -> SyncSummary:
    """Each app's work comes from the warehouse (its ledger against the catalog and manifest), never from
    Dagster's history: a rebuilt, replaced or restored warehouse gets exactly what it lacks."""
    from pendo_assets.definitions import build_app_assets_for, build_definitions, build_metadata_assets_for
    from pendo_assets.defs.pending import pending_from_warehouse
    from pendo_assets.defs.resources import open_exports
    from pendo_assets.loading.ledger import metadata_out_of_date, out_of_date
    from pendo_assets.loading.loader import LoadError, read_manifest
    from pendo_assets.warehouse import open_warehouse
    from pendo_assets.warehouse.bookkeeping import compact_bookkeeping, ensure_bookkeeping

    store = open_exports(settings.exports)
    warehouse = open_warehouse(settings.warehouse, lock_wait_seconds=settings.warehouse_lock_wait_seconds,
                               snowflake_stage=settings.snowflake_stage)
    with warehouse.session() as session:  # a warehouse that cannot be opened stops the sync before any run
        ensure_bookkeeping(session)
        for message in session.abandoned_transactions(lambda run_id: run_ended(instance(), run_id)):
            print(f"recovered: {message}")
    partitions, apps = build_app_assets_for(settings)
    metadata = build_metadata_assets_for(settings, [a.app for a in apps])
    job = build_definitions(settings, [a.app for a in apps], [m.location for m in metadata]
                            ).resolve_implicit_global_asset_job_def()
    summary = SyncSummary()
    print(f"exports:   {settings.exports}\nwarehouse: {settings.warehouse}\ndagster:   {os.environ['DAGSTER_HOME']}")
    if not apps:
        summary.failures.append(f"no apps found under {settings.exports} (expected datasync/<sub>/<app>/"
                                "exportmanifest.json); run `pendo-datasync generate` for demo exports")
    for app_assets in apps:
        try:
            manifest = read_manifest(store, app_assets.app, matched_detail=False)
            work = pending_from_warehouse(app_assets, out_of_date(store, warehouse, app_assets.app, manifest),
                                          partitions)
        except LoadError as exc:
            summary.failures.append(str(exc))
            continue
        requests = work.run_requests()
        print(f"{app_assets.app.label}: {len(manifest.exports)} export(s) in the manifest; "
              f"{work.table_days} table-day(s) and {len(work.definitions)} definition table(s) to build, "
              f"{len(requests)} run(s) to do")
        warning = work.outside_partitions_warning()
        if warning:
            print(f"  warning: {warning}")
        for request in requests:
            result = job.execute_in_process(
                instance=instance(), partition_key=request.partition_key, asset_selection=request.asset_selection,
                tags={**request.tags, **sync_run_tags()}, run_config=QUIET_RUN_CONFIG,
                raise_on_error=False)
            summary.record(app_assets.prefix, instance(), result)
    for assets in metadata:
        try:
            pending = metadata_out_of_date(store, warehouse, assets.location)
        except LoadError as exc:
            summary.failures.append(str(exc))
            continue
        print(f"{assets.location.label}: {len(pending)} export(s) to apply"
              + (f" ({', '.join(map(str, pending))})" if pending else ""))
        if pending:
            result = job.execute_in_process(instance=instance(), asset_selection=assets.keys,
                                            tags=sync_run_tags(), run_config=QUIET_RUN_CONFIG, raise_on_error=False)
            summary.record(assets.prefix, instance(), result)
    try:
        with warehouse.session() as session:  # outside any load: the rows later ones superseded
            compact_bookkeeping(session)
    except UserError as exc:  # housekeeping only: readers take the latest rows either way
        print(f"note: the bookkeeping was not compacted this time ({exc}); the next sync tries again")
    return summary


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
