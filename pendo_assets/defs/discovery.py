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
from pendo_assets.stores import ExportStore
from pendo_assets.stores.base import StoreUnavailable

DISCOVERY_SENSOR = "pendo_discovery"
# Listing a few folders is cheap, and a new app should show within minutes, not after an hourly manifest tick.
MAX_DISCOVERY_INTERVAL_SECONDS = 300


def build_discovery_sensor(loaded_apps: Iterable[AppLocation], interval_seconds: int,
                           configured: bool = False) -> dg.SensorDefinition:
    """`configured`: the apps come from PENDO_APPS, and the root is never listed (it may not allow it)."""
    loaded = frozenset(loaded_apps)

    @dg.sensor(
        name=DISCOVERY_SENSOR,
        description="Reports which apps the export root holds and whether this code location has them all "
                    "(a new app needs a reload of the code location).",
        minimum_interval_seconds=min(interval_seconds, MAX_DISCOVERY_INTERVAL_SECONDS),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def discovery_sensor(exports: ExportStoreResource):
        if configured:
            return dg.SkipReason(f"{len(loaded)} app(s) configured by PENDO_APPS; the export root is not listed")
        return dg.SkipReason(discovery_status(exports.open(), loaded))

    return discovery_sensor


def discovery_status(store: ExportStore, loaded: frozenset[AppLocation]) -> str:
    """What discovery sees, as a skip reason; a store that cannot be read fails the tick with the reason."""
    try:
        found = find_apps(store)
    except StoreUnavailable:
        raise
    except UserError as error:
        return str(error)
    if not found:
        return no_apps_yet(store.url)
    new = [app.label for app in found if app not in loaded]
    if new:
        return (f"apps found that this code location does not have yet: {', '.join(new)}; reload the code "
                "location (Deployment > Reload, or restart dagster dev) to add their assets")
    return f"all {len(found)} app(s) loaded"
