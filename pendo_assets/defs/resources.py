"""Dagster resources: where exports are read from, and where tables are written."""

from __future__ import annotations

import dagster as dg

from pendo_assets.stores import ExportStore, open_export_store
from pendo_assets.warehouse.base import Warehouse
from pendo_assets.warehouse.duckdb import DuckDBWarehouse


class ExportStoreResource(dg.ConfigurableResource):
    """The export root that holds `datasync/<subscriptionId>/<applicationId>/` folders. Read-only."""

    root: str

    def open(self) -> ExportStore:
        return open_export_store(self.root)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse the tables are written to: a DuckDB file."""

    duckdb_path: str

    def open(self) -> Warehouse:
        return DuckDBWarehouse(self.duckdb_path)
