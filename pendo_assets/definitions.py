"""The Dagster code location: one group of assets, checks and a manifest sensor per discovered app.

It loads whatever the export root holds, even nothing yet (a missing or empty root): the always-present
`pendo_discovery` sensor then says what discovery sees.
"""

from __future__ import annotations

import dagster as dg

from pendo_assets.defs.assets import AppAssets, build_app_assets
from pendo_assets.defs.discovery import build_discovery_sensor
from pendo_assets.defs.partitions import daily_partitions
from pendo_assets.defs.resources import ExportStoreResource, WarehouseResource
from pendo_assets.defs.sensors import build_manifest_sensor
from pendo_assets.pendo.discovery import discover_apps
from pendo_assets.settings import Settings
from pendo_assets.stores import open_export_store


def build_app_assets_for(settings: Settings) -> tuple[dg.DailyPartitionsDefinition, list[AppAssets]]:
    partitions = daily_partitions(settings.first_day)
    apps = discover_apps(open_export_store(settings.exports))
    return partitions, [build_app_assets(app, partitions) for app in apps]


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions, apps = build_app_assets_for(settings)
    return dg.Definitions(
        assets=[asset for a in apps for asset in (a.source, a.definitions, a.events)],
        sensors=[*(build_manifest_sensor(a, partitions, settings.sensor_interval_seconds) for a in apps),
                 build_discovery_sensor([a.app for a in apps], settings.sensor_interval_seconds)],
        resources={
            "exports": ExportStoreResource(root=settings.exports),
            "warehouse": WarehouseResource(location=settings.warehouse,
                                           lock_wait_seconds=settings.warehouse_lock_wait_seconds),
        },
        # A run is one day of one app: running its single step in the run's own process avoids
        # spawning a second Python process per run.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
