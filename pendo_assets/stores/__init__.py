"""Where exports live. Every adapter implements `ExportStore`; `open_export_store` picks one by URL."""

from pendo_assets.stores.base import ExportStore, MissingExportFile, open_export_store

__all__ = ["ExportStore", "MissingExportFile", "open_export_store"]
