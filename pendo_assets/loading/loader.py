"""Apply a day's (or the definitions') plan to the warehouse: one transaction, all or nothing.

Every run first adds new manifest entries to the export catalog, then plans from the catalog, so a
day can be rebuilt even after its export rotated out of Pendo's 30-day manifest. A table whose ledger
entry says it was already built from exactly the exports the plan names is left as it is (unless a
reload is asked for). Before anything is deleted, every file the plan needs must exist; while loading,
each slice's rows must equal the bill of materials' `eventCount` and carry the day's periodId. Any
failure rolls the whole day back, ledger and load log included.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from pendo_assets.loading.crash_points import (BATCH_INSERTED, CATALOG_WRITTEN, DAY_COMMITTED, DAY_DELETED,
                                               DEFINITIONS_COMMITTED, DEFINITIONS_DELETED, FILE_INSERTED,
                                               LOAD_LOG_WRITTEN, MANIFEST_READ, TABLE_REPLACED, crash_point)
from pendo_assets.pendo.avro import (PERIOD_COLUMN, AvroReadError, BatchStream, Column, ColumnType, InlineBatches,
                                      read_batches, start_decoder)
from pendo_assets.pendo.models import ExportEntry, ExportManifest, ManifestError, parse_manifest
from pendo_assets.pendo.paths import RootLocation, expected_location, export_file_path, export_folder
from pendo_assets.pendo.plan import DefinitionPlan, Slice, TableDayPlan, plan_day, plan_definitions
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.stores.base import ExportStore, MissingExportFile, StoreReadError, StoreUnavailable
from pendo_assets.warehouse.base import SchemaConflict, Warehouse, WarehouseSession
from pendo_assets.warehouse.bookkeeping import (ExportRefs, LedgerRow, LoadLogRow, exports_for_day,
                                                exports_with_definitions, ledger_of_day, ledger_of_definitions,
                                                record_manifest, write_ledger, write_load_log)
from pendo_assets.warehouse.sql import qualified, quote_ident

MATCHABLE_COLUMN = "matchableId"
EVENT_ID_COLUMN = "eventId"
PROGRESS_EVERY_ROWS = 500_000

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
    with warehouse.session() as session:
        record_manifest(session, app, manifest, folders, run_id)
        crash_point(CATALOG_WRITTEN)
        cataloged = exports_for_day(session, app, day)
        folders.update(folders_of(app, cataloged, expected))
        plan = plan_day(cataloged, day)
        built = ledger_of_day(session, app, day)
        stale = [t for t in tables if reload or built.get(t.value) != _built_from(folders, plan.tables[t].touched_by)]
        slices = [s for t in stale for s in plan.tables[t].slices]
        _require_files(store, app, folders, slices)
        results, log = {}, []
        with _Files(store, app, [_file_path(app, folders, s.counter, name, s.describe())
                                 for s in slices for name in s.files]) as files:
            for table in tables:
                if table not in stale:
                    results[table] = _unchanged_table_day(session, app, folders, plan.tables[table])
                    continue
                results[table], table_log = _replace_table_day(session, files, app, folders, plan.tables[table],
                                                               progress)
                log.extend(table_log)
                crash_point(TABLE_REPLACED)
        write_ledger(session, app, run_id, [LedgerRow(t.value, day, results[t].built_from, results[t].rows)
                                            for t in stale])
        write_load_log(session, app, run_id, log)
        crash_point(LOAD_LOG_WRITTEN)
    crash_point(DAY_COMMITTED)
    progress(f"{day}: {describe_loads(results.values())}")
    return results


def load_definitions(store: ExportStore, warehouse: Warehouse, app: AppLocation,
                     tables: Iterable[DefinitionTable], run_id: str, progress: Progress = lambda _: None,
                     reload: bool = False) -> dict[DefinitionTable, TableLoad]:
    """Bring each definition table up to date, leaving those the ledger says are current, unless `reload`."""
    manifest = read_manifest(store, app)
    expected = expected_location(store.location, manifest.exports)
    folders = folders_of(app, manifest.exports, expected)
    with warehouse.session() as session:
        record_manifest(session, app, manifest, folders, run_id)
        cataloged = exports_with_definitions(session, app)
        folders.update(folders_of(app, cataloged, expected))
        plans = plan_definitions(cataloged)
        built = ledger_of_definitions(session, app)
        results, log, ledger = {}, [], []
        with _Files(store, app) as files:
            for table in tables:
                plan = plans[table]
                result = TableLoad(table.table_name, None, 0, None, plan.touched_by,
                                   _folder_names(folders, plan.touched_by))
                if not reload and built.get(table.table_name) == result.built_from:
                    results[table] = _unchanged(session, app, table.table_name, {}, result)
                    continue
                results[table], table_log = _rebuild_definitions(session, files, app, folders, plan, result)
                log.extend(table_log)
                ledger.append(LedgerRow(table.table_name, None, result.built_from, result.rows))
        write_ledger(session, app, run_id, ledger)
        write_load_log(session, app, run_id, log)
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
        f"SELECT {quote_ident(MATCHABLE_COLUMN)}, count(*) FROM {qualified(app.schema_name, table.value)} "
        f"WHERE {quote_ident(PERIOD_COLUMN)} = ? GROUP BY 1", [day])
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
    """Every file the slices list must exist: one listing per export folder, or, where the store may not
    list (Pendo's hosted bucket can grant reads only), one request per file."""
    wanted: dict[str, list[tuple[str, Slice]]] = {}
    for s in slices:
        for name in s.files:
            wanted.setdefault(folders[s.counter], []).append((_file_path(app, folders, s.counter, name, s.describe()), s))
    missing = []
    for folder, files in wanted.items():
        listed = store.list_files(folder)
        for path, s in files:
            try:
                found = path in listed if listed is not None else store.exists(path)
            except StoreUnavailable as exc:
                raise LoadError(f"{app.label}, {s.describe()}: {exc}. Nothing was deleted or loaded.") from None
            if not found:
                missing.append(f"{store.url}/{path} ({s.describe()})")
    if missing:
        raise LoadError(
            f"{app.label}: {len(missing)} listed file(s) missing, so nothing was deleted or loaded: "
            + "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            + ". If Pendo is still uploading, the next sync will load it; otherwise ask Pendo to re-export.")


def _replace_table_day(session: WarehouseSession, files: "_Files", app: AppLocation, folders: dict[int, str],
                       plan: TableDayPlan, progress: Progress) -> tuple[TableLoad, list[LoadLogRow]]:
    schema, table = app.schema_name, plan.table.value
    result = _table_day_load(folders, plan)
    if session.table_columns(schema, table) is not None:
        session.delete(schema, table, {PERIOD_COLUMN: plan.day})
    crash_point(DAY_DELETED)
    log = []
    for s in plan.slices:
        loaded = 0
        for name in s.files:
            path = _file_path(app, folders, s.counter, name, s.describe())
            with files.open(s.describe(), path) as (columns, batches, source):
                if plan.table.is_matched and MATCHABLE_COLUMN not in {c.name for c in columns}:
                    columns = [*columns, Column(MATCHABLE_COLUMN, ColumnType.TEXT, pa.large_string())]
                result.added_columns += _ensure_table(session, app, table, columns, source, s.describe())
                checked = _CheckedBatches(batches, plan, s, app, source, progress, loaded)
                # One statement per file: DuckDB pulls the batches as they are decoded, which is
                # markedly faster than a statement per batch. A check failing mid-stream aborts it.
                try:
                    session.insert(schema, table, pa.RecordBatchReader.from_batches(
                        pa.schema([pa.field(c.name, c.arrow_type) for c in columns]), checked))
                except Exception:
                    if checked.error is not None:
                        raise checked.error from None
                    raise
                loaded = checked.rows
            result.files += 1
            crash_point(FILE_INSERTED)
        if s.event_count is not None and loaded != s.event_count:
            raise LoadError(
                f"{app.label}, {s.describe()}: the bill of materials says eventCount={s.event_count} but the "
                f"files hold {loaded} rows ({', '.join(s.files)}); the day was not changed.")
        result.rows += loaded
        log.append(LoadLogRow(table, plan.day, s.counter, s.matchable_id, s.files, s.event_count, loaded))
    _require_unique_events(session, app, plan)
    result.columns = session.table_columns(schema, table) or {}
    return result, log


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


def _unchanged_table_day(session: WarehouseSession, app: AppLocation, folders: dict[int, str],
                         plan: TableDayPlan) -> TableLoad:
    return _unchanged(session, app, plan.table.value, {PERIOD_COLUMN: plan.day}, _table_day_load(folders, plan))


def _unchanged(session: WarehouseSession, app: AppLocation, table: str, where: dict, result: TableLoad) -> TableLoad:
    columns = session.table_columns(app.schema_name, table)
    result.rows = session.count(app.schema_name, table, where) if columns is not None else 0
    result.columns, result.unchanged = columns or {}, True
    return result


def _rebuild_definitions(session: WarehouseSession, files: "_Files", app: AppLocation, folders: dict[int, str],
                         plan: DefinitionPlan, result: TableLoad) -> tuple[TableLoad, list[LoadLogRow]]:
    schema, table = app.schema_name, plan.table.table_name
    if plan.snapshot is None and not plan.upserts:
        result.columns = session.table_columns(schema, table) or {}
        return result, []
    if session.table_columns(schema, table) is not None:
        session.delete(schema, table, {})
    crash_point(DEFINITIONS_DELETED)
    log = []
    sources = ([plan.snapshot] if plan.snapshot else []) + list(plan.upserts)
    for source_export in sources:
        where = f"export {source_export.counter}, {table} definitions"
        batches: list[pa.RecordBatch] = []
        for name in source_export.files:
            path = _file_path(app, folders, source_export.counter, name, where)
            with files.open(where, path) as (columns, file_batches, source):
                result.added_columns += _ensure_table(session, app, table, columns, source, where)
                batches.extend(file_batches)
            result.files += 1
        if source_export is not plan.snapshot:
            id_column = _id_column(plan.table, batches)
            ids = tuple({v for b in batches for v in b.column(id_column).to_pylist() if v is not None})
            session.delete(schema, table, {id_column: ids})
        loaded = sum(session.insert(schema, table, b) for b in batches)
        log.append(LoadLogRow(table, None, source_export.counter, None, source_export.files, None, loaded))
    result.rows = session.count(schema, table, {})
    result.columns = session.table_columns(schema, table) or {}
    return result, log


class _Files:
    """A load's files, each opened when its turn comes, with the next one in `order` opened alongside.

    The next file starts decoding as soon as this one is decoded, so the decoder keeps working while the
    warehouse finishes this file's rows, and the next file's first rows are ready when it asks for them.
    Anything opened early and not used (the load failed) is closed with the load.
    """

    def __init__(self, store: ExportStore, app: AppLocation, order: Iterable[str] = ()):
        self.store, self.app = store, app
        self.upcoming = list(order)
        self.prefetched: _OpenedFile | None = None

    def __enter__(self) -> "_Files":
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
            raise LoadError(f"{self.app.label}, {where}: {exc}. The day was not changed.") from None
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


def _ensure_table(session: WarehouseSession, app: AppLocation, table: str, columns: list[Column], source: str,
                  where: str) -> list[str]:
    try:
        return session.ensure_table(app.schema_name, table, columns, source)
    except SchemaConflict as exc:
        raise LoadError(f"{app.label}, {where}: {exc}") from None


def _file_path(app: AppLocation, folders: dict[int, str], counter: int, name: str, where: str) -> str:
    try:
        return export_file_path(folders[counter], name, f"{app.label}, {where}")
    except ManifestError as exc:
        raise LoadError(f"{exc}. Nothing was loaded.") from None


class _CheckedBatches:
    """A file's batches on their way into the warehouse: checked, completed, counted, reported."""

    def __init__(self, batches: Iterator[pa.RecordBatch], plan: TableDayPlan, s: Slice, app: AppLocation,
                 source: str, progress: Progress, rows: int):
        self.batches, self.plan, self.slice, self.app = batches, plan, s, app
        self.source, self.progress, self.rows = source, progress, rows
        self.next_report = (rows // PROGRESS_EVERY_ROWS + 1) * PROGRESS_EVERY_ROWS
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self.batches:
                if self.plan.table.is_matched:
                    batch = _with_matchable(batch, self.slice)
                _require_day(batch, self.plan.day, self.app, self.slice, self.source)
                self.rows += batch.num_rows
                if self.rows >= self.next_report:
                    self.progress(f"{self.plan.table.value} {self.plan.day}: {self.rows:,} rows so far, "
                                  f"reading {self.source}")
                    self.next_report += PROGRESS_EVERY_ROWS
                yield batch
                crash_point(BATCH_INSERTED)
        except Exception as exc:
            # The warehouse sees only that its input stream failed; keep the error that says why.
            self.error = LoadError(f"{self.app.label}, {self.slice.describe()}: {exc}. The day was not changed.") \
                if isinstance(exc, FILE_ERRORS) else exc
            raise


def _with_matchable(batch: pa.RecordBatch, s: Slice) -> pa.RecordBatch:
    if MATCHABLE_COLUMN in batch.schema.names:
        return batch
    return batch.append_column(MATCHABLE_COLUMN, pa.array([s.matchable_id] * batch.num_rows, pa.large_string()))


def _require_day(batch: pa.RecordBatch, day: date, app: AppLocation, s: Slice, source: str) -> None:
    if PERIOD_COLUMN not in batch.schema.names:
        raise LoadError(f"{app.label}, {s.describe()}: {source} has no {PERIOD_COLUMN} column")
    wrong = pc.sum(pc.not_equal(batch.column(PERIOD_COLUMN), pa.scalar(day, pa.date32()))).as_py() or 0
    nulls = batch.column(PERIOD_COLUMN).null_count
    if wrong or nulls:
        raise LoadError(f"{app.label}, {s.describe()}: {source} holds {wrong + nulls} row(s) whose {PERIOD_COLUMN} "
                        f"is not {day}; the day was not changed.")


def _require_unique_events(session: WarehouseSession, app: AppLocation, plan: TableDayPlan) -> None:
    """Pendo's key is (periodId, eventId), plus matchableId in matched tables: a repeat means a bad export."""
    columns = session.table_columns(app.schema_name, plan.table.value) or {}
    if EVENT_ID_COLUMN not in columns or not plan.slices:
        return
    key = [EVENT_ID_COLUMN] + ([MATCHABLE_COLUMN] if plan.table.is_matched else [])
    key_sql = ", ".join(quote_ident(c) for c in key)
    repeated = session.query(
        f"SELECT {key_sql}, count(*) AS n FROM {qualified(app.schema_name, plan.table.value)} "
        f"WHERE {quote_ident(PERIOD_COLUMN)} = ? GROUP BY {key_sql} HAVING count(*) > 1 ORDER BY n DESC, {key_sql} "
        "LIMIT 3", [plan.day])
    if repeated:
        examples = ", ".join(f"{'/'.join(map(str, r[:-1]))} x{r[-1]}" for r in repeated)
        files = "; ".join(f"{s.describe()}: {', '.join(s.files)}" for s in plan.slices if s.files)
        raise LoadError(
            f"{app.label}, {plan.table.value} day {plan.day}: the same {' + '.join(key)} appears more than once "
            f"(e.g. {examples}), but Pendo's events are unique per day; loaded from {files}. "
            "The day was not changed; ask Pendo to re-export the day.")


def _id_column(table: DefinitionTable, batches: list[pa.RecordBatch]) -> str:
    names = {n for b in batches for n in b.schema.names}
    for candidate in (table.id_column, "id"):
        if candidate in names:
            return candidate
    raise LoadError(f"{table.table_name} definition files have neither {table.id_column!r} nor 'id' column")
