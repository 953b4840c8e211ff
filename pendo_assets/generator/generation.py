"""Build the export tree of a scenario as a bucket would hold it at a chosen day."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from pendo_assets.generator.buckets import BucketOutput, azure_account, is_bucket_url, upload
from pendo_assets.generator.exports import (
    DEFAULT_AZURE_ACCOUNT, Destination, DestinationKind, PublishedExport, listed_files, manifest_window,
    write_app_manifest, write_export, write_uploading_export)
from pendo_assets.generator.metadata_exports import ACCOUNT, VISITOR, MetadataTruth, write_metadata_exports
from pendo_assets.generator.scenarios import SCENARIOS
from pendo_assets.generator.schedule import plan_exports, published_by, uploading_on
from pendo_assets.generator.spec import Scenario
from pendo_assets.generator.truth import Truth, compute_truth
from pendo_assets.generator.world import AppWorld, Calendar, build_world

DEFAULT_BUCKET = "acme-pendo-exports"
DEFAULT_OUT_DIR = Path("data/exports")
DEFAULT_SEED = 7
# A local path, or the object's URL when the scenario was generated into a bucket.
PathOrUrl = Path | str


@dataclass(frozen=True)
class MissingListedFile:
    """A file the manifest lists that is not in the bucket; `relative_path` is as listed."""

    counter: int
    day: date
    relative_path: str
    path: PathOrUrl


@dataclass(frozen=True)
class GeneratedApp:
    """`uploading_folders`: export folders present in the bucket but not (yet) in the manifest."""

    subscription_id: str
    application_id: str
    manifest_path: PathOrUrl
    truth: Truth
    published_exports: int
    manifest_exports: int
    newly_written_exports: int
    files: int
    event_rows: int
    missing_files: tuple[MissingListedFile, ...] = ()
    uploading_folders: tuple[PathOrUrl, ...] = ()


@dataclass(frozen=True)
class GeneratedSubscription:
    """Visitor and account exports of one subscription; the pipeline does not load them yet."""

    subscription_id: str
    visitor_manifest_path: PathOrUrl
    account_manifest_path: PathOrUrl
    visitor_truth: MetadataTruth
    account_truth: MetadataTruth


@dataclass(frozen=True)
class GeneratedExports:
    out_dir: PathOrUrl
    apps: list[GeneratedApp]
    subscriptions: list[GeneratedSubscription] = field(default_factory=list)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def generate(scenario: str = "demo", out_dir: Path | str = DEFAULT_OUT_DIR, end_day: date | None = None,
             seed: int = DEFAULT_SEED, as_of: date | None = None, bucket: str | None = None,
             destination: str | None = None, azure_account: str | None = None,
             events_per_day: int | None = None, with_truth: bool = True) -> GeneratedExports:
    """Write every export published up to `as_of` (default `end_day`), then each manifest.

    The last export runs on `end_day` (default: today, UTC). Everything else comes from the simulated
    clock, so the same arguments always give the same bytes. `events_per_day` replaces the scenario's
    volume. Without `with_truth`, each app's truth holds definitions and row counts but no event ids,
    which spares a second pass over the events and the memory the ids would take.

    `out_dir` is a local folder or a bucket URL (`gs://bucket/prefix`, `s3://...`, `az://container/...`).
    rootUrls name `bucket` in the `destination` cloud (Azure: of `azure_account`); by default, a bucket
    URL's own bucket, cloud, account and path, and for a local folder gs://acme-pendo-exports/.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(sorted(SCENARIOS))}")
    spec = SCENARIOS[scenario]
    if events_per_day is not None:
        spec = spec.with_events_per_day(events_per_day)
    end_day = end_day or utc_today()
    as_of = as_of or end_day
    first_export_day = end_day - timedelta(days=spec.export_days - 1)
    if not first_export_day <= as_of <= end_day:
        raise ValueError(f"as_of must lie between {first_export_day} and {end_day}")

    def write(target: Destination) -> GeneratedExports:
        return _write_scenario(scenario, spec, seed, first_export_day, as_of, target, with_truth)

    if is_bucket_url(out_dir):
        return _generate_into_bucket(BucketOutput.parse(str(out_dir)), bucket, destination, azure_account, write)
    return write(Destination(Path(out_dir), bucket or DEFAULT_BUCKET,
                             DestinationKind(destination or DestinationKind.GCS.value),
                             azure_account or DEFAULT_AZURE_ACCOUNT))


def _write_scenario(scenario: str, spec: Scenario, seed: int, first_export_day: date, as_of: date,
                    target: Destination, with_truth: bool) -> GeneratedExports:
    apps: list[GeneratedApp] = []
    subscriptions: list[GeneratedSubscription] = []
    for subscription in spec.subscriptions:
        worlds = [build_world(seed, scenario, spec, subscription, app, first_export_day)
                  for app in subscription.apps]
        apps += [_generate_app(world, as_of, target, with_truth) for world in worlds]
        if spec.metadata_exports is not None:
            metadata = write_metadata_exports(seed, scenario, spec, subscription, worlds,
                                              Calendar(first_export_day), as_of, target)
            visitors, accounts = metadata[VISITOR.folder], metadata[ACCOUNT.folder]
            subscriptions.append(GeneratedSubscription(
                subscription.subscription_id, visitors.manifest_path, accounts.manifest_path,
                visitors.truth, accounts.truth))
    return GeneratedExports(out_dir=target.out_dir, apps=apps, subscriptions=subscriptions)


def _generate_into_bucket(output: BucketOutput, bucket: str | None, destination: str | None,
                          account: str | None, write: Callable[[Destination], GeneratedExports]
                          ) -> GeneratedExports:
    """Generate into a local temporary folder, then upload it (see buckets.py); paths in the result are URLs."""
    filesystem = output.filesystem()
    kind = DestinationKind(destination) if destination else output.kind
    if account is None:
        account = azure_account(filesystem) if kind is output.kind is DestinationKind.AZURE else DEFAULT_AZURE_ACCOUNT
    with tempfile.TemporaryDirectory(prefix="pendo-generate-") as staging_dir:
        staging = Path(staging_dir)
        generated = write(Destination(staging, bucket or output.bucket, kind, account, output.prefix))
        completed_now = upload(staging, output, filesystem)

    def url(path: PathOrUrl) -> str:
        return f"{output.url}/{Path(path).relative_to(staging).as_posix()}"

    def newly_written(app: GeneratedApp) -> int:
        app_folder = Path(app.manifest_path).parent.relative_to(staging).as_posix()
        return sum(folder.rsplit("/", 1)[0] == app_folder for folder in completed_now)

    apps = [replace(app, manifest_path=url(app.manifest_path), newly_written_exports=newly_written(app),
                    missing_files=tuple(replace(missing, path=url(missing.path)) for missing in app.missing_files),
                    uploading_folders=tuple(url(folder) for folder in app.uploading_folders))
            for app in generated.apps]
    subscriptions = [replace(subscription, visitor_manifest_path=url(subscription.visitor_manifest_path),
                             account_manifest_path=url(subscription.account_manifest_path))
                     for subscription in generated.subscriptions]
    return GeneratedExports(out_dir=output.url, apps=apps, subscriptions=subscriptions)


def _generate_app(world: AppWorld, as_of: date, destination: Destination, with_truth: bool) -> GeneratedApp:
    plans = plan_exports(world)
    published = [write_export(world, plan, destination) for plan in published_by(plans, as_of)]
    uploading = [write_uploading_export(world, plan, destination) for plan in uploading_on(plans, as_of)]
    listed = manifest_window(published, lambda export: export.plan.finish_time)
    manifest_path = write_app_manifest(world, destination, listed)
    truth = compute_truth(world, [export.plan for export in published], with_truth,
                          [export.manifest_entry for export in published])
    missing = tuple(MissingListedFile(export.plan.counter, day, name, export.folder / name)
                    for export in published for day, name in export.lost_files)
    return GeneratedApp(
        subscription_id=world.subscription.subscription_id,
        application_id=world.app.application_id,
        manifest_path=manifest_path,
        truth=truth,
        published_exports=len(published),
        manifest_exports=len(listed),
        newly_written_exports=sum(export.newly_written for export in published),
        files=sum(len(listed_files(export.manifest_entry)) for export in published),
        event_rows=sum(_event_rows(export) for export in published),
        missing_files=missing,
        uploading_folders=tuple(uploading),
    )


def _event_rows(export: PublishedExport) -> int:
    rows = 0
    for period in export.manifest_entry["timeDependent"]:
        rows += period.get("allEvents", {}).get("eventCount", 0)
        rows += sum(matched["eventCount"] for matched in period.get("matchedEvents", []))
    return rows
