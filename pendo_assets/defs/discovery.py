"""The `pendo_discovery` sensor: what app discovery sees under the export root, on every tick.

The code location builds one group of assets per app when it loads, so an app Pendo starts exporting
later needs a reload; this sensor says so, and says why there is nothing to show on an empty root.
It never requests runs and never opens the warehouse.
"""

from __future__ import annotations

from typing import Iterable

import dagster as dg

from pendo_assets.defs.resources import ExportStoreResource
from pendo_assets.errors import UserError
from pendo_assets.pendo.discovery import find_apps, no_apps_yet
from pendo_assets.pendo.tables import AppLocation

DISCOVERY_SENSOR = "pendo_discovery"
# Listing a few folders is cheap, and a new app should show within minutes, not after an hourly manifest tick.
MAX_DISCOVERY_INTERVAL_SECONDS = 300


def build_discovery_sensor(loaded_apps: Iterable[AppLocation], interval_seconds: int) -> dg.SensorDefinition:
    loaded = frozenset(loaded_apps)

    @dg.sensor(
        name=DISCOVERY_SENSOR,
        description="Reports which apps the export root holds and whether this code location has them all "
                    "(a new app needs a reload of the code location).",
        minimum_interval_seconds=min(interval_seconds, MAX_DISCOVERY_INTERVAL_SECONDS),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def discovery_sensor(exports: ExportStoreResource):
        return dg.SkipReason(discovery_status(exports.root, loaded))

    return discovery_sensor


def discovery_status(root: str, loaded: frozenset[AppLocation]) -> str:
    try:
        found = find_apps(root)
    except UserError as error:
        return str(error)
    if not found:
        return no_apps_yet(root)
    new = [app.label for app in found if app not in loaded]
    if new:
        return (f"apps found that this code location does not have yet: {', '.join(new)}; reload the code "
                "location (Deployment > Reload, or restart dagster dev) to add their assets")
    return f"all {len(found)} app(s) loaded"
