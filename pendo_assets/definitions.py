"""The Dagster code location: one group of assets, checks and a manifest sensor per app, and per subscription
one group for its visitor and account tables (`defs/metadata_assets.py`).

The apps are those configured (PENDO_APPS) or, by default, those discovery finds by listing the export
root when the code location loads; visitor and account exports are looked for in their subscriptions.
What it found is kept as the location's reconstruction metadata, so every run worker builds the same
assets without reaching the bucket again. A root that cannot be
read (missing, unreachable, refused) leaves the location loaded and empty: the always-present
`pendo_discovery` sensor then says why on each tick, and the location picks the apps up when it is
reloaded.
"""

from __future__ import annotations

import json
from typing import Sequence

import dagster as dg
# Not in dagster's public namespace in 1.13, but the documented home of reconstruction metadata.
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType

from pendo_assets.defs.assets import AppAssets, build_app_assets
from pendo_assets.defs.discovery import build_discovery_sensor
from pendo_assets.defs.metadata_assets import MetadataAssets, build_metadata_assets, build_metadata_sensor
from pendo_assets.defs.partitions import daily_partitions
from pendo_assets.defs.resources import exports_resource, open_exports, warehouse_resource
from pendo_assets.warehouse import is_snowflake
from pendo_assets.defs.sensors import build_manifest_sensor
from pendo_assets.errors import UserError
from pendo_assets.pendo.discovery import discover_apps, discover_metadata
from pendo_assets.pendo.metadata import MetadataKind, MetadataLocation
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings

DISCOVERED_APPS = "pendo/discovered_apps"
DISCOVERED_METADATA = "pendo/discovered_metadata"


def app_locations(settings: Settings) -> list[AppLocation]:
    """The configured apps, else every app listed under the export root's datasync/ (reaches the store)."""
    return list(settings.apps) or discover_apps(open_exports(settings.exports))


def metadata_locations(settings: Settings) -> list[MetadataLocation]:
    """Visitor and account exports with a manifest: in the configured apps' subscriptions (no listing), else in
    every listed subscription (reaches the store)."""
    configured = {app.subscription_id for app in settings.apps} if settings.apps else None
    return discover_metadata(open_exports(settings.exports), configured)


def build_metadata_assets_for(settings: Settings, apps: Sequence[AppLocation],
                              locations: Sequence[MetadataLocation] | None = None) -> list[MetadataAssets]:
    locations = metadata_locations(settings) if locations is None else locations
    kind = "snowflake" if is_snowflake(settings.warehouse) else "duckdb"
    return [build_metadata_assets(location, [a for a in apps if a.subscription_id == location.subscription_id],
                                  kind) for location in locations]


def build_app_assets_for(settings: Settings, apps: Sequence[AppLocation] | None = None
                         ) -> tuple[dg.DailyPartitionsDefinition, list[AppAssets]]:
    partitions = daily_partitions(settings.first_day)
    apps = app_locations(settings) if apps is None else apps
    kind = "snowflake" if is_snowflake(settings.warehouse) else "duckdb"
    return partitions, [build_app_assets(app, partitions, kind) for app in apps]


def build_definitions(settings: Settings, apps: Sequence[AppLocation] | None = None,
                      locations: Sequence[MetadataLocation] | None = None) -> dg.Definitions:
    partitions, app_assets = build_app_assets_for(settings, apps)
    metadata_assets = build_metadata_assets_for(settings, [a.app for a in app_assets], locations)
    return dg.Definitions(
        assets=[*(asset for a in app_assets for asset in (a.source, a.definitions, a.events)),
                *(asset for m in metadata_assets for asset in (m.source, m.tables))],
        sensors=[*(build_manifest_sensor(a, partitions, settings.sensor_interval_seconds) for a in app_assets),
                 *(build_metadata_sensor(m, settings.sensor_interval_seconds) for m in metadata_assets),
                 build_discovery_sensor([a.app for a in app_assets], settings.sensor_interval_seconds,
                                        configured=bool(settings.apps))],
        resources={
            "exports": exports_resource(settings.exports),
            "warehouse": warehouse_resource(settings),
        },
        # A run is one day of one app: running its single step in the run's own process avoids
        # spawning a second Python process per run.
        executor=dg.in_process_executor,
    )


def _or_none_found(discover, settings: Settings) -> list:
    """What `discover` finds, or nothing when the root cannot be read: the discovery sensor's ticks say why. Each
    kind on its own, so configured apps keep their assets while their bucket is unreachable."""
    try:
        return discover(settings)
    except UserError:
        return []


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    context = DefinitionsLoadContext.get()
    kept = context.reconstruction_metadata if context.load_type is DefinitionsLoadType.RECONSTRUCTION else {}
    if DISCOVERED_APPS in kept:
        apps = [AppLocation(*ids) for ids in json.loads(kept[DISCOVERED_APPS])]
        locations = [MetadataLocation(sub, MetadataKind(kind)) for sub, kind in json.loads(kept[DISCOVERED_METADATA])]
    else:
        apps, locations = _or_none_found(app_locations, settings), _or_none_found(metadata_locations, settings)
    return build_definitions(settings, apps, locations).with_reconstruction_metadata({
        DISCOVERED_APPS: json.dumps([[app.subscription_id, app.application_id] for app in apps]),
        DISCOVERED_METADATA: json.dumps([[m.subscription_id, m.kind.value] for m in locations])})
