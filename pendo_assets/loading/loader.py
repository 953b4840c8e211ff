"""Apply a day's (or the definitions') plan to the warehouse: one transaction, all or nothing.

Every run first adds new manifest entries to the export catalog, then plans from the catalog, so a
day can be rebuilt even after its export rotated out of Pendo's 30-day manifest. A table whose ledger
entry says it was already built from exactly the exports the plan names is left as it is (unless a
reload is asked for). Before anything is deleted, every file the plan needs must exist and the tables
get the columns the files' headers name. The warehouse then replaces the table-days in one transaction
(`warehouse.base`): each slice's rows must equal the bill of materials' `eventCount` and carry the day's
periodId. Any failure rolls the whole day back, ledger and load log included.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from pendo_assets.crash_points import (BATCH_INSERTED, CATALOG_WRITTEN, DAY_COMMITTED, DEFINITIONS_COMMITTED,
                                       MANIFEST_READ, crash_point)
from pendo_assets.pendo.avro import (PERIOD_COLUMN, AvroReadError, BatchStream, Column, ColumnType, InlineBatches,
                                     read_batches, read_columns, start_decoder)
from pendo_assets.pendo.models import ExportEntry, ExportManifest, ManifestError, parse_manifest
from pendo_assets.pendo.paths import RootLocation, expected_location, export_file_path, export_folder
from pendo_assets.pendo.plan import DefinitionPlan, Slice, TableDayPlan, plan_day, plan_definitions
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.stores.base import ExportStore, MissingExportFile, StoreReadError, StoreUnavailable
from pendo_assets.warehouse.base import (Bookkeeping, Replaced, Replacement, SchemaConflict, SessionTag, SliceRows,
                                         TransactionLost, Warehouse, WarehouseSession, union_of_columns)
from pendo_assets.warehouse.bookkeeping import (ExportRefs, LedgerRow, LoadLogRow, ensure_bookkeeping,
                                                exports_for_day, exports_with_definitions, ledger_of_day,
                                                ledger_of_definitions, record_manifest, write_ledger, write_load_log)
from pendo_assets.warehouse.checks import CheckFailed
from pendo_assets.warehouse.load import replace

MATCHABLE_COLUMN = "matchableId"
EVENT_ID_COLUMN = "eventId"
PROGRESS_EVERY_ROWS = 500_000
# Enough of a file's first bytes for its Avro header (the writer schema) in one ranged read.
HEADER_BLOCK_BYTES = 256 * 1024

Progress = Callable[[str], None]
# Why a listed file could not be read; each message names the file, and the load adds app, export and day.
FILE_ERRORS = (AvroReadError, MissingExportFile, StoreReadError, StoreUnavailable)


class LoadError(Exception):
    """A load that was refused or rolled back; the message names the app, export, day and file."""


@dataclass
class TableLoad:
    table: str
    day: date | None
    rows: int
    expected_rows: int | None
    touched_by: tuple[int, ...]
    export_folders: dict[int, str] = field(default_factory=dict)
    expected_by_matchable: dict[str, int | None] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    added_columns: list[str] = field(default_factory=list)
    files: int = 0
    # True when the warehouse already held the table from exactly these exports, so nothing was written.
    unchanged: bool = False

    @property
    def built_from(self) -> ExportRefs:
        return frozenset(self.export_folders.items())


def read_manifest(store: ExportStore, app: AppLocation, matched_detail: bool = True) -> ExportManifest:
    """The app's manifest; `matched_detail=False` is enough to plan (see `parse_manifest`), never to load."""
    source = f"{store.url}/{app.manifest_path}"
    try:
        return parse_manifest(store.read_bytes(app.manifest_path), source, matched_detail=matched_detail)
    except MissingExportFile as exc:
        raise LoadError(f"{app.label}: {exc}") from None
    except ManifestError as exc:
        raise LoadError(f"{app.label}: {exc}. Nothing was loaded; fix or wait for the manifest.") from None


def load_day(store: ExportStore, warehouse: Warehouse, app: AppLocation, day: date,
             tables: Iterable[EventTable], run_id: str, progress: Progress = lambda _: None,
             manifest: ExportManifest | None = None, reload: bool = False) -> dict[EventTable, TableLoad]:
    """Bring the day of every table in `tables` up to date; pass `manifest` when loading many days from one read.

    A table the ledger says is built from the exports the plan names is left as it is, unless `reload`.
    """
    start_decoder()
    if manifest is None:
        manifest = read_manifest(store, app)
    expected = expected_location(store.location, manifest.exports)
    folders = folders_of(app, manifest.exports, expected)
    tables = sorted(set(tables), key=list(EventTable).index)
    crash_point(MANIFEST_READ)
    with warehouse.session(SessionTag(app.label, run_id)) as session:
        record_catalog(session, app, manifest, folders, run_id)
        cataloged = exports_for_day(session, app, day)
        folders.update(folders_of(app, cataloged, expected))
        plan = plan_day(cataloged, day)
        built = ledger_of_day(session, app, day)
        stale = [t for t in tables if reload or built.get(t.value) != _built_from(folders, plan.tables[t].touched_by)]
        slices = [s for t in stale for s in plan.tables[t].slices]
        _require_files(store, app, folders, slices)
        results = {t: _table_day_load(folders, plan.tables[t]) for t in tables}
        replacements = [_event_replacement(store, app, folders, plan.tables[t]) for t in stale]

        def bookkeeping(s: WarehouseSession, replaced: list[Replaced]) -> None:
            write_ledger(s, app, run_id, [LedgerRow(done.replacement.table, day, results[t].built_from, done.rows)
                                          for t, done in zip(stale, replaced)])
            write_load_log(s, app, run_id, [
                LoadLogRow(t.value, day, planned.counter, planned.matchable_id, planned.files, planned.event_count,
                           loaded)
                for t, done in zip(stale, replaced)
                for planned, loaded in zip(plan.tables[t].slices, done.rows_per_slice)])

        order = [path for r in replacements for s in r.slices for path in s.files]
        with ExportFiles(store, app, order) as files:
            replaced = replace_atomically(session, app, replacements, DecodedRows(files, app, day, progress),
                                          bookkeeping, "The day was not changed")
            for t, done in zip(stale, replaced):
                results[t].rows, results[t].files, results[t].added_columns = done.rows, done.files, done.added_columns
        for t in tables:
            if t in stale:
                results[t].columns = session.table_columns(app.schema_name, t.value) or {}
            else:
                _unchanged(session, app, t.value, {PERIOD_COLUMN: day}, results[t])
    crash_point(DAY_COMMITTED)
    progress(f"{day}: {describe_loads(results.values())}")
    return results


def load_definitions(store: ExportStore, warehouse: Warehouse, app: AppLocation,
                     tables: Iterable[DefinitionTable], run_id: str, progress: Progress = lambda _: None,
                     reload: bool = False) -> dict[DefinitionTable, TableLoad]:
    """Bring each definition table up to date, leaving those the ledger says are current, unless `reload`.

    A table is rebuilt whole from its latest full snapshot plus the later upserts, merged in Python (a few
    thousand rows), so every warehouse receives it as one replacement.
    """
    manifest = read_manifest(store, app)
    expected = expected_location(store.location, manifest.exports)
    folders = folders_of(app, manifest.exports, expected)
    with warehouse.session(SessionTag(app.label, run_id)) as session:
        record_catalog(session, app, manifest, folders, run_id)
        cataloged = exports_with_definitions(session, app)
        folders.update(folders_of(app, cataloged, expected))
        plans = plan_definitions(cataloged)
        built = ledger_of_definitions(session, app)
        results, stale, replacements = {}, [], []
        for table in tables:
            plan = plans[table]
            results[table] = TableLoad(table.table_name, None, 0, None, plan.touched_by,
                                       _folder_names(folders, plan.touched_by))
            if not reload and built.get(table.table_name) == results[table].built_from:
                _unchanged(session, app, table.table_name, {}, results[table])
            elif plan.snapshot is None and not plan.upserts:
                results[table].columns = session.table_columns(app.schema_name, table.table_name) or {}
            else:
                stale.append(table)
                replacements.append(_definitions_replacement(store, app, folders, plan, results[table]))
        sources = {table: ([plans[table].snapshot] if plans[table].snapshot else []) + list(plans[table].upserts)
                   for table in stale}

        def bookkeeping(s: WarehouseSession, replaced: list[Replaced]) -> None:
            write_ledger(s, app, run_id, [LedgerRow(t.table_name, None, results[t].built_from, done.rows)
                                          for t, done in zip(stale, replaced)])
            write_load_log(s, app, run_id, [
                LoadLogRow(t.table_name, None, source.counter, None, source.files, None, loaded)
                for t, done in zip(stale, replaced) for source, loaded in zip(sources[t], done.rows_per_slice)])

        with ExportFiles(store, app) as files:
            replaced = replace_atomically(session, app, replacements, DecodedRows(files, app, None, progress),
                                          bookkeeping, "Nothing was changed")
            for t, done in zip(stale, replaced):
                results[t].rows, results[t].added_columns = done.rows, done.added_columns
                results[t].columns = session.table_columns(app.schema_name, t.table_name) or {}
    crash_point(DEFINITIONS_COMMITTED)
    progress(f"definitions: {describe_loads(results.values())}")
    return results


def describe_loads(results: Iterable[TableLoad]) -> str:
    """One line for a day (or the definitions), since each log line is an event Dagster stores."""
    results = list(results)
    replaced = ", ".join(f"{r.table} {r.rows:,} rows from {r.files} file(s)" for r in results if not r.unchanged)
    unchanged = ", ".join(f"{r.table} ({r.rows:,} rows)" for r in results if r.unchanged)
    exports = sorted({c for r in results for c in r.touched_by})
    return "; ".join(part for part in (
        f"replaced {replaced}" if replaced else "",
        f"left as already built: {unchanged}" if unchanged else "",
        f"from exports {', '.join(map(str, exports))}" if exports else "no export mentions it")
        if part)


def count_table_day(session: WarehouseSession, app: AppLocation, table: EventTable, day: date
                    ) -> tuple[int, dict[str, int]]:
    """Rows of a table-day, and for matched tables the rows per (bare) matchable id."""
    columns = session.table_columns(app.schema_name, table.value)
    if columns is None:
        return 0, {}
    total = session.count(app.schema_name, table.value, {PERIOD_COLUMN: day})
    if not table.is_matched:
        return total, {}
    rows = session.query(
        f"SELECT {session.quote(MATCHABLE_COLUMN)}, count(*) FROM {session.quote(app.schema_name)}."
        f"{session.quote(table.value)} WHERE {session.quote(PERIOD_COLUMN)} = ? GROUP BY 1", [day])
    per_matchable: dict[str, int] = {}
    for matchable_id, count in rows:
        bare = str(matchable_id).split("/", 1)[-1]
        per_matchable[bare] = per_matchable.get(bare, 0) + count
    return total, per_matchable


def folders_of(app: AppLocation, entries: Iterable[ExportEntry], expected: RootLocation | None) -> dict[int, str]:
    """Each export's folder, relative to the export root, with its rootUrl checked (see `export_folder`)."""
    try:
        return {e.counter: export_folder(app, e, expected) for e in entries}
    except ManifestError as exc:
        raise LoadError(f"{exc}. Nothing was loaded.") from None


def _folder_names(folders: dict[int, str], counters: Iterable[int]) -> dict[int, str]:
    """Each export's own folder name, recorded with a load: a counter alone may be redelivered elsewhere."""
    return {c: folders[c].rsplit("/", 1)[-1] for c in counters}


def _built_from(folders: dict[int, str], counters: Iterable[int]) -> ExportRefs:
    return frozenset(_folder_names(folders, counters).items())


def _require_files(store: ExportStore, app: AppLocation, folders: dict[int, str], slices: list[Slice]) -> None:
    require_files(store, app.label, [(folders[s.counter], _file_path(app, folders, s.counter, name, s.describe()),
                                      s.describe()) for s in slices for name in s.files])


def require_files(store: ExportStore, label: str, wanted: list[tuple[str, str, str]]) -> None:
    """Every (folder, path, where) file must exist: one listing per export folder, or, where the store may not
    list (Pendo's hosted bucket can grant reads only), one request per file."""
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for folder, path, where in wanted:
        by_folder.setdefault(folder, []).append((path, where))
    missing = []
    for folder, files in by_folder.items():
        listed = store.list_files(folder)
        for path, where in files:
            try:
                found = path in listed if listed is not None else store.exists(path)
            except StoreUnavailable as exc:
                raise LoadError(f"{label}, {where}: {exc}. Nothing was deleted or loaded.") from None
            if not found:
                missing.append(f"{store.url}/{path} ({where})")
    if missing:
        raise LoadError(
            f"{label}: {len(missing)} listed file(s) missing, so nothing was deleted or loaded: "
            + "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            + ". If Pendo is still uploading, the next sync will load it; otherwise ask Pendo to re-export.")


def record_catalog(session: WarehouseSession, app: AppLocation, manifest: ExportManifest, folders: dict[int, str],
                   run_id: str) -> None:
    """Catalog the manifest's new entries in a transaction of their own: they stay true whatever the load does."""
    ensure_bookkeeping(session)
    with session.transaction():
        record_manifest(session, app, manifest, folders, run_id)
    crash_point(CATALOG_WRITTEN)


def _event_replacement(store: ExportStore, app: AppLocation, folders: dict[int, str], plan: TableDayPlan
                       ) -> Replacement:
    """The table-day's replacement, with each file's columns as its header gives them."""
    slices, file_columns = [], {}
    for s in plan.slices:
        paths = tuple(_file_path(app, folders, s.counter, name, s.describe()) for name in s.files)
        fill = {MATCHABLE_COLUMN: s.matchable_id} if plan.table.is_matched else {}
        slices.append(SliceRows(s.describe(), paths, s.event_count, fill))
        for path in paths:
            file_columns[path] = tuple(header_columns(store, app, s.describe(), path))
    # A matched file may omit its matchableId: the slice gives it.
    matchable = [Column(MATCHABLE_COLUMN, ColumnType.TEXT, pa.large_string())] if plan.table.is_matched else []
    columns = union_of_columns(*file_columns.values(), matchable) if file_columns else ()
    key = (EVENT_ID_COLUMN, MATCHABLE_COLUMN) if plan.table.is_matched else (EVENT_ID_COLUMN,)
    return Replacement(app.schema_name, plan.table.value, plan.day, tuple(slices), columns,
                       key if EVENT_ID_COLUMN in {c.name for c in columns} else (), file_columns=file_columns)


def header_columns(store: ExportStore, app: AppLocation, where: str, path: str) -> list[Column]:
    try:
        with store.open(path, block_size=HEADER_BLOCK_BYTES) as handle:
            return read_columns(handle, f"{store.url}/{path}")
    except FILE_ERRORS as exc:
        raise LoadError(f"{app.label}, {where}: {exc}. Nothing was changed.") from None


def _definitions_replacement(store: ExportStore, app: AppLocation, folders: dict[int, str], plan: DefinitionPlan,
                             result: TableLoad) -> Replacement:
    """The snapshot, then each upsert replacing the rows of the ids it holds; one slice per export."""
    table = plan.table.table_name
    file_columns, merged = {}, []
    sources = ([plan.snapshot] if plan.snapshot else []) + list(plan.upserts)
    with ExportFiles(store, app) as files:
        for source_export in sources:
            where = f"export {source_export.counter}, {table} definitions"
            batches: list[pa.RecordBatch] = []
            for name in source_export.files:
                path = _file_path(app, folders, source_export.counter, name, where)
                with files.open(where, path) as (columns, file_batches, _):
                    file_columns[path] = tuple(columns)
                    batches.extend(file_batches)
                result.files += 1
            rows = pa.Table.from_batches(batches) if batches else pa.table({})
            if source_export is not plan.snapshot and rows.num_rows:
                id_column = _id_column(plan.table, rows)
                merged = [m.filter(pc.invert(pc.fill_null(pc.is_in(m.column(id_column), rows.column(id_column)),
                                                          False))) if id_column in m.column_names else m
                          for m in merged]
            merged.append(rows)
    slices = tuple(SliceRows(f"export {e.counter}, {table} definitions", rows=rows)
                   for e, rows in zip(sources, merged))
    key = (plan.table.id_column,) if all(plan.table.id_column in m.column_names for m in merged if m.num_rows) else ()
    return Replacement(app.schema_name, table, None, slices, union_of_columns(*file_columns.values()), key,
                       file_columns=file_columns)


def replace_atomically(session: WarehouseSession, app: AppLocation, replacements: list[Replacement],
                       decoded: "DecodedRows", bookkeeping: Bookkeeping, unchanged: str) -> list[Replaced]:
    if not replacements:
        return []
    try:
        return replace(session, replacements, decoded, bookkeeping)
    except CheckFailed as exc:
        raise LoadError(f"{app.label}, {exc}. {unchanged}; ask Pendo to re-export it if this persists.") from None
    except (SchemaConflict, TransactionLost) as exc:
        raise LoadError(f"{app.label}, {exc}") from None
    except Exception:
        # The warehouse sees only that its input stream failed; raise the error that says why.
        if decoded.error is not None:
            raise decoded.error from None
        raise


def _table_day_load(folders: dict[int, str], plan: TableDayPlan) -> TableLoad:
    """A table-day's result before loading: what the plan expects, in total and per matchable."""
    result = TableLoad(plan.table.value, plan.day, 0, plan.expected_rows, plan.touched_by,
                       _folder_names(folders, plan.touched_by))
    for s in plan.slices:
        if s.matchable_id is not None:
            before = result.expected_by_matchable.get(s.matchable_id, 0)
            result.expected_by_matchable[s.matchable_id] = (
                None if before is None or s.event_count is None else before + s.event_count)
    return result


def _unchanged(session: WarehouseSession, app: AppLocation, table: str, where: dict, result: TableLoad) -> TableLoad:
    columns = session.table_columns(app.schema_name, table)
    result.rows = session.count(app.schema_name, table, where) if columns is not None else 0
    result.columns, result.unchanged = columns or {}, True
    return result


class ExportFiles:
    """A load's files, each opened when its turn comes, with the next one in `order` opened alongside.

    The next file starts decoding as soon as this one is decoded, so the decoder keeps working while the
    warehouse finishes this file's rows, and the next file's first rows are ready when it asks for them.
    Anything opened early and not used (the load failed) is closed with the load.
    """

    def __init__(self, store: ExportStore, app: AppLocation, order: Iterable[str] = ()):
        self.store, self.app = store, app
        self.upcoming = list(order)
        self.prefetched: _OpenedFile | None = None

    def __enter__(self) -> "ExportFiles":
        return self

    def __exit__(self, *_) -> None:
        self._drop_prefetched()

    def _drop_prefetched(self) -> None:
        if self.prefetched is not None:
            self.prefetched.close()
            self.prefetched = None

    @contextmanager
    def open(self, where: str, path: str) -> Iterator[tuple[list[Column], Iterator[pa.RecordBatch], str]]:
        """One listed file; read errors anywhere in the block are reported with app, export and day."""
        if self.upcoming and self.upcoming[0] == path:
            self.upcoming.pop(0)
        if self.prefetched is not None and self.prefetched.path == path:
            current, self.prefetched = self.prefetched, None
        else:
            self._drop_prefetched()
            current = _OpenedFile(self.store, path)
        try:
            if self.upcoming:
                after = current.batches.decoded if current.batches is not None else None
                self.prefetched = _OpenedFile(self.store, self.upcoming[0], after)
            if current.error is not None:
                raise current.error
            yield current.columns, current.batches, current.source
        except FILE_ERRORS as exc:
            raise LoadError(f"{self.app.label}, {where}: {exc}. Nothing was changed.") from None
        finally:
            current.close()


class _OpenedFile:
    """A file opened and decoding (or the error opening it gave, raised when its turn comes)."""

    def __init__(self, store: ExportStore, path: str, after: threading.Event | None = None):
        self.path, self.source = path, f"{store.url}/{path}"
        self.columns: list[Column] = []
        self.batches: BatchStream | InlineBatches | None = None
        self.error: Exception | None = None
        self.handle = None
        try:
            self.handle = store.open(path)
            self.columns, self.batches = read_batches(self.handle, self.source, after=after)
        except FILE_ERRORS as exc:
            self.error = exc
            self.close()

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _file_path(app: AppLocation, folders: dict[int, str], counter: int, name: str, where: str) -> str:
    try:
        return export_file_path(folders[counter], name, f"{app.label}, {where}")
    except ManifestError as exc:
        raise LoadError(f"{exc}. Nothing was loaded.") from None


class DecodedRows:
    """Decoded rows of the load's files for warehouses that load through Python: each file's batches completed
    with the slice's fill, checked for the day as they stream (naming the file, which the warehouse's own day
    check cannot), counted for progress. An error is kept, since the warehouse may see only its stream fail."""

    def __init__(self, files: "ExportFiles", app: AppLocation, day: date | None, progress: Progress):
        self.files, self.app, self.day, self.progress = files, app, day, progress
        self.error: Exception | None = None
        self.rows: dict[tuple[str, date | None], int] = {}

    @contextmanager
    def batches(self, replacement: Replacement, slice_rows: SliceRows, path: str
                ) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
        with self.files.open(slice_rows.describe, path) as (columns, batches, source):
            fields = [pa.field(c.name, c.arrow_type) for c in columns]
            fill = {name: value for name, value in slice_rows.fill.items() if name not in {c.name for c in columns}}
            fields += [pa.field(name, pa.large_string()) for name in fill]
            yield pa.schema(fields), self._checked(replacement, slice_rows, batches, fill, source)

    def _checked(self, replacement: Replacement, slice_rows: SliceRows, batches: Iterator[pa.RecordBatch],
                 fill: dict[str, str], source: str) -> Iterator[pa.RecordBatch]:
        key = (replacement.table, replacement.day)
        rows = self.rows.get(key, 0)
        next_report = (rows // PROGRESS_EVERY_ROWS + 1) * PROGRESS_EVERY_ROWS
        try:
            for batch in batches:
                for name, value in fill.items():
                    batch = batch.append_column(name, pa.array([value] * batch.num_rows, pa.large_string()))
                if replacement.day is not None:
                    _require_day(batch, replacement.day, source)
                rows += batch.num_rows
                self.rows[key] = rows
                if rows >= next_report:
                    self.progress(f"{replacement.describe}: {rows:,} rows so far, reading {source}")
                    next_report += PROGRESS_EVERY_ROWS
                yield batch
                crash_point(BATCH_INSERTED)
        except Exception as exc:
            self.error = LoadError(f"{self.app.label}, {slice_rows.describe}: {exc}. Nothing was changed.") \
                if isinstance(exc, (*FILE_ERRORS, DayMismatch)) else exc
            raise


class DayMismatch(Exception):
    """A file holds rows of another day than the bill of materials lists it for."""


def _require_day(batch: pa.RecordBatch, day: date, source: str) -> None:
    if PERIOD_COLUMN not in batch.schema.names:
        raise DayMismatch(f"{source} has no {PERIOD_COLUMN} column")
    wrong = pc.sum(pc.not_equal(batch.column(PERIOD_COLUMN), pa.scalar(day, pa.date32()))).as_py() or 0
    nulls = batch.column(PERIOD_COLUMN).null_count
    if wrong or nulls:
        raise DayMismatch(f"{source} holds {wrong + nulls} row(s) whose {PERIOD_COLUMN} is not {day}")


def _id_column(table: DefinitionTable, rows: pa.Table) -> str:
    names = set(rows.column_names)
    for candidate in (table.id_column, "id"):
        if candidate in names:
            return candidate
    raise LoadError(f"{table.table_name} definition files have neither {table.id_column!r} nor 'id' column")
