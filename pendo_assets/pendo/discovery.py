"""Find every exported app under an export root: `datasync/<subscriptionId>/<applicationId>/exportmanifest.json`."""

from __future__ import annotations

from pendo_assets.pendo.tables import AppLocation
from pendo_assets.stores.base import ExportStore

# Subscription-level metadata exports sit beside the app folders; they are not apps.
SUBSCRIPTION_LEVEL_FOLDERS = frozenset({"account", "visitor"})


def discover_apps(store: ExportStore) -> list[AppLocation]:
    apps = []
    for subscription_id in store.list_folders("datasync"):
        for application_id in store.list_folders(f"datasync/{subscription_id}"):
            if application_id in SUBSCRIPTION_LEVEL_FOLDERS:
                continue
            app = AppLocation(subscription_id, application_id)
            if store.exists(app.manifest_path):
                apps.append(app)
    return sorted(apps)
