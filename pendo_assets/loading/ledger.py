"""What the warehouse lacks: every table-day whose ledger entry differs from the exports it must be built from.

The exports a table-day must be built from are those of the catalog and the manifest together that
mention it (`plan.build_sources`); the warehouse's ledger says which exports it was last built from.
Only the warehouse decides: a warehouse that was deleted, replaced or restored from an older copy
lacks exactly what its own ledger does not hold, whatever Dagster's history says was loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pendo_assets.loading.loader import folders_of
from pendo_assets.loading.metadata_loader import read_metadata_manifest, unapplied
from pendo_assets.pendo.metadata import MetadataLocation
from pendo_assets.pendo.models import ExportManifest
from pendo_assets.pendo.paths import expected_location
from pendo_assets.pendo.plan import build_sources
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.stores.base import ExportStore
from pendo_assets.warehouse.base import Warehouse
from pendo_assets.warehouse.bookkeeping import (applied_metadata_exports, cataloged_exports,
                                                cataloged_metadata_exports, ensure_bookkeeping, ledger_of_app)


@dataclass
class OutOfDate:
    """Table-days and definition tables to (re)build, each with the counters of the exports it is built from."""

    days: dict[tuple[EventTable, date], frozenset[int]] = field(default_factory=dict)
    definitions: dict[DefinitionTable, frozenset[int]] = field(default_factory=dict)
    folders: dict[int, str] = field(default_factory=dict)


def out_of_date(store: ExportStore, warehouse: Warehouse, app: AppLocation, manifest: ExportManifest) -> OutOfDate:
    """Compare the warehouse's ledger with the catalog plus `manifest` (a planning read is enough).

    Writes nothing but the bookkeeping tables of an empty warehouse.
    """
    folders_of(app, manifest.exports, expected_location(store.location, manifest.exports))  # refuse a bad rootUrl now
    with warehouse.session() as session:
        ensure_bookkeeping(session)
        exports = {e.counter: e for e in cataloged_exports(session, app)}
        ledger = ledger_of_app(session, app)
    exports.update((e.counter, e) for e in manifest.exports)
    folders = {counter: entry.folder_name for counter, entry in exports.items()}
    sources = build_sources(exports.values())

    def current(table: str, day: date | None, counters: frozenset[int]) -> bool:
        return ledger.get((table, day)) == frozenset((c, folders[c]) for c in counters)

    return OutOfDate(
        days={(table, day): counters for (table, day), counters in sources.days.items()
              if not current(table.value, day, counters)},
        definitions={table: counters for table, counters in sources.definitions.items()
                     if not current(table.table_name, None, counters)},
        folders=folders)


def metadata_out_of_date(store: ExportStore, warehouse: Warehouse, location: MetadataLocation) -> list[int]:
    """Counters of the visitor or account exports (catalog plus manifest) whose rows the warehouse lacks."""
    listed = read_metadata_manifest(store, location)
    folders_of(location, listed, expected_location(store.location, listed))  # refuse a bad rootUrl now
    with warehouse.session() as session:
        ensure_bookkeeping(session)
        exports = {e.counter: e for e in cataloged_metadata_exports(session, location)}
        applied = applied_metadata_exports(session, location)
    exports.update((e.counter, e) for e in listed)
    return [e.counter for e in unapplied(exports.values(), applied)]
