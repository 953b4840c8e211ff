"""Where exports live: a local folder (`local.py`) or a bucket (`bucket.py`), both an `ExportStore`.

Which one, with which credentials, is the Dagster resource's choice (`defs/resources.py`).
"""

from pendo_assets.stores.base import ExportStore, MissingExportFile

__all__ = ["ExportStore", "MissingExportFile"]
