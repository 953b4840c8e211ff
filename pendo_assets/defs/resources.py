"""Dagster resources: where exports are read from, and where tables are written."""

from __future__ import annotations

import dagster as dg

from pendo_assets.settings import DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS
from pendo_assets.stores import ExportStore, open_export_store
from pendo_assets.warehouse import open_warehouse
from pendo_assets.warehouse.base import Warehouse


class ExportStoreResource(dg.ConfigurableResource):
    """The export root that holds `datasync/<subscriptionId>/<applicationId>/` folders. Read-only."""

    root: str

    def open(self) -> ExportStore:
        return open_export_store(self.root)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse the tables are written to: a DuckDB file path or duckdb:///abs/path."""

    location: str
    lock_wait_seconds: int = DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS

    def open(self) -> Warehouse:
        return open_warehouse(self.location, lock_wait_seconds=self.lock_wait_seconds)
