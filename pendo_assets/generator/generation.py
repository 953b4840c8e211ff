"""Build the export tree of a scenario as a bucket would hold it at a chosen day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pendo_assets.generator.exports import (
    Destination, PublishedExport, listed_files, manifest_window, write_export, write_manifest)
from pendo_assets.generator.scenarios import SCENARIOS, AppSpec, Scenario, SubscriptionSpec
from pendo_assets.generator.schedule import plan_exports, published_by
from pendo_assets.generator.truth import Truth, compute_truth
from pendo_assets.generator.world import build_world

DEFAULT_BUCKET = "acme-pendo-exports"
DEFAULT_OUT_DIR = Path("data/exports")
DEFAULT_SEED = 7


@dataclass(frozen=True)
class GeneratedApp:
    subscription_id: str
    application_id: str
    manifest_path: Path
    truth: Truth
    published_exports: int
    manifest_exports: int
    newly_written_exports: int
    files: int
    event_rows: int


@dataclass(frozen=True)
class GeneratedExports:
    out_dir: Path
    apps: list[GeneratedApp]


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def generate(scenario: str = "demo", out_dir: Path | str = DEFAULT_OUT_DIR, end_day: date | None = None,
             seed: int = DEFAULT_SEED, as_of: date | None = None,
             bucket: str = DEFAULT_BUCKET) -> GeneratedExports:
    """Write every export published up to `as_of` (default `end_day`), then each app's manifest.

    The last export runs on `end_day` (default: today, UTC). Everything else comes from the simulated
    clock, so the same arguments always give the same bytes.
    """
    spec = SCENARIOS[scenario]
    end_day = end_day or utc_today()
    as_of = as_of or end_day
    first_export_day = end_day - timedelta(days=spec.export_days - 1)
    if not first_export_day <= as_of <= end_day:
        raise ValueError(f"as_of must lie between {first_export_day} and {end_day}")
    destination = Destination(Path(out_dir), bucket)
    apps = [_generate_app(scenario, spec, subscription, app, first_export_day, seed, as_of, destination)
            for subscription in spec.subscriptions for app in subscription.apps]
    return GeneratedExports(out_dir=Path(out_dir), apps=apps)


def _generate_app(scenario_name: str, spec: Scenario, subscription: SubscriptionSpec, app: AppSpec,
                  first_export_day: date, seed: int, as_of: date, destination: Destination) -> GeneratedApp:
    world = build_world(seed, scenario_name, spec, subscription, app, first_export_day)
    plans = published_by(plan_exports(world), as_of)
    published = [write_export(world, plan, destination) for plan in plans]
    listed = manifest_window(published)
    manifest_path = write_manifest(destination.app_dir(world), listed)
    return GeneratedApp(
        subscription_id=subscription.subscription_id,
        application_id=app.application_id,
        manifest_path=manifest_path,
        truth=compute_truth(world, plans),
        published_exports=len(published),
        manifest_exports=len(listed),
        newly_written_exports=sum(export.newly_written for export in published),
        files=sum(len(listed_files(export.manifest_entry)) for export in published),
        event_rows=sum(_event_rows(export) for export in published),
    )


def _event_rows(export: PublishedExport) -> int:
    rows = 0
    for period in export.manifest_entry["timeDependent"]:
        rows += period.get("allEvents", {}).get("eventCount", 0)
        rows += sum(matched["eventCount"] for matched in period.get("matchedEvents", []))
    return rows
