"""Apply a subscription's visitor or account exports to the warehouse: one transaction per export.

Each export updates three tables of `SUB_<sub>_VISITOR` (or `_ACCOUNT`) together: `VISITORS`, wide, one row
per id with the file's columns; `VISITORMETADATASCHEMA`, the field catalog; and `VISITORMETADATA`, long, one row
per id and field holding a value, derived in the warehouse from the wide rows and the catalog. An export's rows
replace the same ids' (fields') rows of earlier exports; ids it does not carry are kept, since ongoing exports
carry only the records that changed (`warehouse.scopes.settle`). Exports are applied in counter order, each one
the ledger does not name yet, so a rebuilt warehouse replays every export its catalog holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa

from pendo_assets.crash_points import CATALOG_WRITTEN, EXPORT_APPLIED, MANIFEST_READ, crash_point
from pendo_assets.loading.loader import (DecodedRows, ExportFiles, LoadError, Progress, TableLoad, folders_of,
                                         header_columns, replace_atomically, require_files)
from pendo_assets.pendo.avro import Column, ColumnType
from pendo_assets.pendo.metadata import (EXPORT_COUNTER_COLUMN, EXPORT_FOLDER_COLUMN, FIELD_ATTRIBUTES,
                                         FIELD_NAME_COLUMN, RECORD_ID_COLUMN, VALUE_COLUMN, MetadataExport,
                                         MetadataLocation, parse_metadata_manifest)
from pendo_assets.pendo.models import ManifestError
from pendo_assets.pendo.paths import expected_location, export_file_path
from pendo_assets.stores.base import ExportStore, MissingExportFile
from pendo_assets.warehouse.base import (Replaced, Replacement, SessionTag, SliceRows, Unpivot, Upsert, Warehouse,
                                         WarehouseSession, union_of_columns)
from pendo_assets.warehouse.bookkeeping import (ExportRefs, LedgerRow, LoadLogRow, applied_metadata_exports,
                                                cataloged_metadata_exports, ensure_bookkeeping, ledger_owner,
                                                record_metadata_manifest, write_ledger, write_load_log)
from pendo_assets.warehouse.checks import CheckFailed

TAG_COLUMNS = (Column(EXPORT_COUNTER_COLUMN, ColumnType.INT64, pa.int64(), "long"),
               Column(EXPORT_FOLDER_COLUMN, ColumnType.TEXT, pa.large_string()))
_BOOLEAN_ATTRIBUTES = {"isDeleted", "isPerApp"}
FIELD_COLUMNS = (
    *(Column(a, ColumnType.BOOLEAN if a in _BOOLEAN_ATTRIBUTES else ColumnType.TEXT,
             pa.bool_() if a in _BOOLEAN_ATTRIBUTES else pa.large_string(),
             "boolean" if a in _BOOLEAN_ATTRIBUTES else "string") for a in FIELD_ATTRIBUTES),
    Column(FIELD_NAME_COLUMN, ColumnType.TEXT, pa.large_string()))


@dataclass
class MetadataLoad:
    """What a load did: the exports it applied (in order), and each table's rows and columns afterwards."""

    location: MetadataLocation
    applied: list[int] = field(default_factory=list)
    tables: dict[str, TableLoad] = field(default_factory=dict)


def read_metadata_manifest(store: ExportStore, location: MetadataLocation) -> tuple[MetadataExport, ...]:
    source = f"{store.url}/{location.manifest_path}"
    try:
        return parse_metadata_manifest(store.read_bytes(location.manifest_path), source, location.kind)
    except MissingExportFile as exc:
        raise LoadError(f"{location.label}: {exc}") from None
    except ManifestError as exc:
        raise LoadError(f"{location.label}: {exc}. Nothing was loaded; fix or wait for the manifest.") from None


def unapplied(exports: Iterable[MetadataExport], applied: ExportRefs) -> list[MetadataExport]:
    """The exports, in counter order, whose rows the ledger does not say the tables hold."""
    return sorted((e for e in exports if (e.counter, e.folder_name) not in applied), key=lambda e: e.counter)


def undescribed_columns(session: WarehouseSession, location: MetadataLocation, columns: Iterable[str]) -> list[str]:
    """The wide `columns` that no field catalog row describes (the id and the export tags are the loader's own)."""
    q = session.quote
    described = {str(name).lower() for (name,) in session.query(
        f"SELECT DISTINCT {q(FIELD_NAME_COLUMN)} FROM {q(location.schema_name)}.{q(location.kind.fields_table)}")}
    own = {RECORD_ID_COLUMN.lower(), EXPORT_COUNTER_COLUMN.lower(), EXPORT_FOLDER_COLUMN.lower()}
    return sorted(c for c in columns if c.lower() not in described | own)


def load_metadata(store: ExportStore, warehouse: Warehouse, location: MetadataLocation, run_id: str,
                  progress: Progress = lambda _: None) -> MetadataLoad:
    """Catalog the manifest's new exports, then apply every export the warehouse does not hold yet, in counter
    order, each in its own transaction. A failing export stops the load (later ones wait for it), naming the
    subscription, kind, export and file."""
    exports = read_metadata_manifest(store, location)
    expected = expected_location(store.location, exports)
    folders = folders_of(location, exports, expected)
    crash_point(MANIFEST_READ)
    result = MetadataLoad(location)
    kind = location.kind
    with warehouse.session(SessionTag(location.label, run_id)) as session:
        ensure_bookkeeping(session)
        with session.transaction():
            record_metadata_manifest(session, location, exports, folders, run_id)
        crash_point(CATALOG_WRITTEN)
        cataloged = cataloged_metadata_exports(session, location)
        folders.update(folders_of(location, cataloged, expected))
        for table in (kind.records_table, kind.metadata_table, kind.fields_table):
            result.tables[table] = TableLoad(table, None, 0, None, ())
        applied = applied_metadata_exports(session, location)
        for export in unapplied(cataloged, applied):
            _apply_export(session, store, location, folders[export.counter], export, applied, result, run_id,
                          progress)
            applied |= {(export.counter, export.folder_name)}
            result.applied.append(export.counter)
            crash_point(EXPORT_APPLIED)
        for table, load in result.tables.items():
            load.columns = session.table_columns(location.schema_name, table) or {}
            load.rows = session.count(location.schema_name, table, {}) if load.columns else 0
            load.unchanged = not result.applied
            load.touched_by = tuple(result.applied)
    progress(f"{location.label}: " + (f"applied export(s) {', '.join(map(str, result.applied))}; "
                                      if result.applied else "nothing new; ")
             + ", ".join(f"{t} {r.rows:,} rows" for t, r in result.tables.items()))
    return result


def _apply_export(session: WarehouseSession, store: ExportStore, location: MetadataLocation, folder: str,
                  export: MetadataExport, applied: frozenset, result: MetadataLoad, run_id: str,
                  progress: Progress) -> None:
    kind, where, folder_name = location.kind, f"export {export.counter}", export.folder_name

    def paths(names: tuple[str, ...]) -> list[str]:
        try:
            return [export_file_path(folder, name, f"{location.label}, {where}") for name in names]
        except ManifestError as exc:
            raise LoadError(f"{exc}. Nothing was loaded.") from None

    record_paths, schema_paths = paths(export.record_files), paths(export.schema_files)
    require_files(store, location.label, [(folder, path, where) for path in record_paths + schema_paths])
    record_columns = {path: tuple(header_columns(store, location, where, path)) for path in record_paths}
    schema_columns = {path: tuple(header_columns(store, location, where, path)) for path in schema_paths}
    tables = result.tables
    wide = union_of_columns(*record_columns.values(), TAG_COLUMNS)
    fields = union_of_columns(*schema_columns.values(), FIELD_COLUMNS, TAG_COLUMNS)
    long = (Column(kind.id_column, ColumnType.TEXT, pa.large_string()),
            *(c for c in FIELD_COLUMNS if c.name != FIELD_NAME_COLUMN),
            Column(VALUE_COLUMN, ColumnType.JSON, pa.large_string()), *TAG_COLUMNS)
    fill = {EXPORT_COUNTER_COLUMN: str(export.counter), EXPORT_FOLDER_COLUMN: folder_name}

    def upsert(key: str) -> Upsert:
        return Upsert(key, export.counter, folder_name, EXPORT_COUNTER_COLUMN, EXPORT_FOLDER_COLUMN)

    wide_names = tuple(dict.fromkeys(c.name for columns in record_columns.values() for c in columns
                                     if c.name != RECORD_ID_COLUMN))
    replacements = [
        Replacement(location.schema_name, kind.records_table, None,
                    (SliceRows(f"{where}, {kind.plural}", tuple(record_paths), export.record_count, fill),),
                    wide, (RECORD_ID_COLUMN,), upsert(RECORD_ID_COLUMN), file_columns=record_columns),
        Replacement(location.schema_name, kind.fields_table, None,
                    (SliceRows(f"{where}, metadata schema", tuple(schema_paths), None, fill),),
                    fields, (FIELD_NAME_COLUMN,), upsert(FIELD_NAME_COLUMN), file_columns=schema_columns),
        Replacement(location.schema_name, kind.metadata_table, None, (), long, (kind.id_column, "group", "name"),
                    upsert(kind.id_column),
                    Unpivot(kind.records_table, RECORD_ID_COLUMN, kind.fields_table, FIELD_NAME_COLUMN,
                            FIELD_ATTRIBUTES, wide_names, VALUE_COLUMN)),
    ]

    _refuse_fields_sharing_a_name(session, store, location, export, schema_paths)

    def bookkeeping(s: WarehouseSession, replaced: list[Replaced]) -> None:
        _check_described(s, location, where, record_columns)
        write_ledger(s, ledger_owner(location), run_id, [LedgerRow(
            kind.records_table, None, frozenset(applied | {(export.counter, folder_name)}), replaced[0].rows)])
        write_load_log(s, ledger_owner(location), run_id, [
            LoadLogRow(done.replacement.table, None, export.counter, None,
                       [p for sl in done.replacement.slices for p in sl.files],
                       done.replacement.slices[0].expected_rows if done.replacement.slices else None, done.rows)
            for done in replaced])

    with ExportFiles(store, location, [p for r in replacements for sl in r.slices for p in sl.files]) as files:
        replaced = replace_atomically(session, location, replacements, DecodedRows(files, location, None, progress),
                                      bookkeeping, f"Export {export.counter} was not applied")
    for done in replaced:
        tables[done.replacement.table].files += done.files
        tables[done.replacement.table].added_columns += done.added_columns
    progress(f"{location.label}, {where}: " + ", ".join(f"{d.replacement.table} {d.rows:,} rows" for d in replaced))


def _refuse_fields_sharing_a_name(session: WarehouseSession, store: ExportStore, location: MetadataLocation,
                                  export: MetadataExport, schema_paths: list[str]) -> None:
    """No two fields of the catalog, as this export leaves it, share `group` and `name`: the long table knows a field
    by those alone (Pendo's layout has no avroFieldName), so it could not tell their values apart. Checked before
    anything is deleted, from the export's metadataschema.avro over the catalog's other fields."""
    q, kind, where = session.quote, location.kind, f"export {export.counter}"
    fields: dict[str, tuple[str, str]] = {}
    if session.table_columns(location.schema_name, kind.fields_table) is not None:
        fields.update((str(field_name), (group, name)) for group, name, field_name in session.query(
            f"SELECT {q('group')}, {q('name')}, {q(FIELD_NAME_COLUMN)} "
            f"FROM {q(location.schema_name)}.{q(kind.fields_table)}"))
    with ExportFiles(store, location) as files:
        for path in schema_paths:
            with files.open(where, path) as (_, batches, _source):
                for batch in batches:
                    rows = batch.to_pydict()
                    fields.update((field_name, (group, name)) for group, name, field_name in
                                  zip(rows["group"], rows["name"], rows[FIELD_NAME_COLUMN]))
    by_pair: dict[tuple[str, str], list[str]] = {}
    for field_name, pair in sorted(fields.items()):
        by_pair.setdefault(pair, []).append(field_name)
    shared = [(pair, names) for pair, names in sorted(by_pair.items()) if len(names) > 1]
    if shared:
        (group, name), names = shared[0]
        raise LoadError(
            f"{location.label}, {where}: fields {' and '.join(names)} of metadataschema.avro share group {group!r} "
            f"and name {name!r}" + (f" ({len(shared) - 1} more such pair(s))" if len(shared) > 1 else "")
            + f", so {kind.metadata_table} could not tell their values apart. Export {export.counter} was not "
            "applied; ask Pendo to correct the field catalog")


def _check_described(session: WarehouseSession, location: MetadataLocation, where: str,
                     record_columns: dict[str, tuple[Column, ...]]) -> None:
    """Every column of the export's files is a field of the catalog: otherwise its meaning is unknown. The files are
    checked, not the table: a column a refused export added before its transaction stays in the table, empty, and
    must not refuse every later export."""
    problems = [f"{path} has column(s) {', '.join(names)}" for path, columns in record_columns.items()
                if (names := undescribed_columns(session, location, (c.name for c in columns)))]
    if problems:
        raise CheckFailed(f"{where}: {'; '.join(problems)} that no {location.kind.fields_table} row describes "
                          "(metadataschema.avro lacks them)")
