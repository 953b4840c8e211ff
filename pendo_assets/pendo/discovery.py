"""Find every exported app under an export root, `datasync/<subscriptionId>/<applicationId>/exportmanifest.json`,
and each subscription's visitor and account exports, `datasync/<subscriptionId>/visitor|account/`."""

from __future__ import annotations

from typing import Iterable

from pendo_assets.errors import UserError
from pendo_assets.pendo.metadata import MetadataKind, MetadataLocation
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.stores.base import ExportStore

# Subscription-level metadata exports sit beside the app folders; they are not apps.
SUBSCRIPTION_LEVEL_FOLDERS = frozenset(kind.folder for kind in MetadataKind)


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


def discover_metadata(store: ExportStore, subscriptions: Iterable[str] | None = None) -> list[MetadataLocation]:
    """The visitor and account exports that have a manifest: of every listed subscription, or of `subscriptions`
    without listing (Pendo's hosted bucket may grant reads only), one existence check per manifest."""
    if subscriptions is None:
        subscriptions = store.list_folders("datasync")
    found = [MetadataLocation(subscription_id, kind) for subscription_id in sorted(set(subscriptions))
             for kind in MetadataKind]
    return [location for location in found if store.exists(location.manifest_path)]


def find_apps(store: ExportStore) -> list[AppLocation]:
    """The apps in `store`, refusing (UserError) a root that is missing or has no datasync/ folder.

    No app yet is not a mistake: Pendo creates the app folders with its first export.
    """
    if not store.folder_exists(""):
        raise UserError(f"the export root {store.url} does not exist or is empty; set --exports or "
                        "PENDO_EXPORTS to the folder or bucket path that holds datasync/")
    if not store.folder_exists("datasync"):
        raise UserError(f"{store.url} has no datasync/ folder: is this the destination path configured in Pendo? "
                        "Set --exports or PENDO_EXPORTS to the folder or bucket path that holds datasync/")
    return discover_apps(store)


def no_apps_yet(root: str) -> str:
    return (f"no apps under {root}/datasync yet; Pendo creates datasync/<subscriptionId>/<applicationId>/ "
            "with the first export")
