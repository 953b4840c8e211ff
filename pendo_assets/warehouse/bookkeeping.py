"""The pipeline's own tables, in a schema of their own: the export catalog, the ledger and the load log.

The catalog keeps every manifest entry ever seen, with its bill of materials, because Pendo's manifest
only lists the last 30 days: a day must stay reloadable after its export rotated out. Slices are
stored one row each, so planning a day reads only the exports that mention it.

The ledger is the record of what is loaded: one row per table-day (and per definition table) naming
the exports it was last built from, written in the same transaction as its rows. A warehouse that is
rebuilt, restored from a backup or replaced therefore says itself what it lacks, whatever Dagster's
history remembers. The load log is the history: every slice each run loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Sequence

import pyarrow as pa

from pendo_assets.pendo.metadata import MetadataExport, MetadataLocation
from pendo_assets.pendo.models import (AllEventsSlice, BillOfMaterials, ExportEntry, ExportManifest,
                                       MatchedSlice, Period)
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, MatchableType
from pendo_assets.warehouse.base import WarehouseSession
from pendo_assets.warehouse.sql import qualified, quote_ident

SCHEMA = "PENDO_DATASYNC"
CATALOG = "EXPORT_CATALOG"
CATALOG_SLICES = "EXPORT_CATALOG_SLICES"
LEDGER = "LEDGER"
LOAD_LOG = "LOAD_LOG"
METADATA_CATALOG = "METADATA_EXPORT_CATALOG"

_DDL = {
    CATALOG: """subscription_id VARCHAR, application_id VARCHAR, counter BIGINT, export_folder VARCHAR,
        root_url VARCHAR, export_type VARCHAR, finish_time VARCHAR, storage_size BIGINT,
        bom_timestamp VARCHAR, number_of_files BIGINT, definition_files VARCHAR,
        first_seen_at TIMESTAMP, first_seen_by_run VARCHAR""",
    CATALOG_SLICES: """subscription_id VARCHAR, application_id VARCHAR, counter BIGINT, period_day DATE,
        period_index INTEGER, matchable_type VARCHAR, matchable_id VARCHAR, event_count BIGINT,
        files VARCHAR""",
    LEDGER: """subscription_id VARCHAR, application_id VARCHAR, table_name VARCHAR, period_day DATE,
        built_from VARCHAR, row_count BIGINT, loaded_at TIMESTAMP, run_id VARCHAR""",
    LOAD_LOG: """loaded_at TIMESTAMP, run_id VARCHAR, subscription_id VARCHAR, application_id VARCHAR,
        table_name VARCHAR, period_day DATE, export_counter BIGINT, matchable_id VARCHAR, files VARCHAR,
        expected_rows BIGINT, loaded_rows BIGINT""",
    METADATA_CATALOG: """subscription_id VARCHAR, kind VARCHAR, counter BIGINT, export_folder VARCHAR,
        root_url VARCHAR, finish_time VARCHAR, bom_timestamp VARCHAR, record_files VARCHAR, record_count BIGINT,
        schema_files VARCHAR, first_seen_at TIMESTAMP, first_seen_by_run VARCHAR""",
}

_SLICE_SCHEMA = pa.schema([
    ("subscription_id", pa.string()), ("application_id", pa.string()), ("counter", pa.int64()),
    ("period_day", pa.date32()), ("period_index", pa.int32()), ("matchable_type", pa.string()),
    ("matchable_id", pa.string()), ("event_count", pa.int64()), ("files", pa.string()),
])
_LOG_SCHEMA = pa.schema([
    ("loaded_at", pa.timestamp("us")), ("run_id", pa.string()), ("subscription_id", pa.string()),
    ("application_id", pa.string()), ("table_name", pa.string()), ("period_day", pa.date32()),
    ("export_counter", pa.int64()), ("matchable_id", pa.string()), ("files", pa.string()),
    ("expected_rows", pa.int64()), ("loaded_rows", pa.int64()),
])


# (counter, export folder name): a rewritten manifest may deliver a counter again in another folder.
ExportRefs = frozenset[tuple[int, str]]


@dataclass(frozen=True)
class LedgerRow:
    table_name: str
    period_day: date | None
    built_from: ExportRefs
    row_count: int


@dataclass(frozen=True)
class LoadLogRow:
    table_name: str
    period_day: date | None
    export_counter: int
    matchable_id: str | None
    files: Sequence[str]
    expected_rows: int | None
    loaded_rows: int


def ensure_bookkeeping(session: WarehouseSession) -> None:
    session.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}")
    for table, columns in _DDL.items():
        session.execute(f"CREATE TABLE IF NOT EXISTS {qualified(SCHEMA, table)} ({columns})")


def record_manifest(session: WarehouseSession, app: AppLocation, manifest: ExportManifest,
                    folders: dict[int, str], run_id: str) -> list[int]:
    """Add the manifest's entries the catalog does not hold yet; returns their counters.

    An entry whose counter is known but whose folder changed (a rewritten manifest) replaces the old one.
    Call `ensure_bookkeeping` first, outside any transaction.
    """
    known = dict(session.query(
        f"SELECT counter, export_folder FROM {qualified(SCHEMA, CATALOG)} "
        "WHERE subscription_id = ? AND application_id = ?", [app.subscription_id, app.application_id]))
    new = [e for e in manifest.exports if known.get(e.counter) != folders[e.counter]]
    if not new:
        return []
    for table in (CATALOG, CATALOG_SLICES):
        session.delete(SCHEMA, table, {"subscription_id": app.subscription_id,
                                       "application_id": app.application_id,
                                       "counter": tuple(e.counter for e in new)})
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for entry in new:
        bom = entry.bom
        session.execute(
            f"INSERT INTO {qualified(SCHEMA, CATALOG)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [app.subscription_id, app.application_id, entry.counter, folders[entry.counter], entry.root_url,
             json.dumps(list(entry.export_type)) if entry.export_type is not None else None,
             entry.finish_time, entry.storage_size, bom.timestamp, bom.number_of_files,
             json.dumps({t.manifest_key: list(f) for t, f in bom.definition_files.items()}), now, run_id])
    session.insert(SCHEMA, CATALOG_SLICES, _slice_rows(app, new))
    return [e.counter for e in new]


def record_metadata_manifest(session: WarehouseSession, location: MetadataLocation,
                             exports: Sequence[MetadataExport], folders: dict[int, str], run_id: str) -> list[int]:
    """Like `record_manifest`, for a visitor or account manifest: every export stays known after it rotates out."""
    owner = [location.subscription_id, location.kind.value]
    known = dict(session.query(
        f"SELECT counter, export_folder FROM {qualified(SCHEMA, METADATA_CATALOG)} "
        "WHERE subscription_id = ? AND kind = ?", owner))
    new = [e for e in exports if known.get(e.counter) != folders[e.counter]]
    if not new:
        return []
    session.delete(SCHEMA, METADATA_CATALOG, {"subscription_id": location.subscription_id,
                                              "kind": location.kind.value, "counter": tuple(e.counter for e in new)})
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for e in new:
        session.execute(
            f"INSERT INTO {qualified(SCHEMA, METADATA_CATALOG)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*owner, e.counter, folders[e.counter], e.root_url, e.finish_time, e.timestamp,
             json.dumps(list(e.record_files)), e.record_count, json.dumps(list(e.schema_files)), now, run_id])
    return [e.counter for e in new]


def cataloged_metadata_exports(session: WarehouseSession, location: MetadataLocation) -> list[MetadataExport]:
    """Every visitor or account export ever seen, in counter order."""
    rows = session.query(
        f"SELECT counter, root_url, finish_time, bom_timestamp, record_files, schema_files, record_count "
        f"FROM {qualified(SCHEMA, METADATA_CATALOG)} WHERE subscription_id = ? AND kind = ? ORDER BY counter",
        [location.subscription_id, location.kind.value])
    return [MetadataExport(counter, root_url, finish, timestamp, tuple(json.loads(records)),
                           tuple(json.loads(schemas)), count)
            for counter, root_url, finish, timestamp, records, schemas, count in rows]


def ledger_owner(location: MetadataLocation) -> AppLocation:
    """Visitor and account loads keep their ledger and load log rows under the kind's folder name in place of an
    application id (`visitor`, `account`), which no app folder can be."""
    return AppLocation(location.subscription_id, location.kind.folder)


def applied_metadata_exports(session: WarehouseSession, location: MetadataLocation) -> ExportRefs:
    """The exports whose rows the visitor or account tables hold, by the ledger written with them."""
    return ledger_of_definitions(session, ledger_owner(location)).get(location.kind.records_table, frozenset())


def exports_for_day(session: WarehouseSession, app: AppLocation, day: date) -> list[ExportEntry]:
    """Every cataloged export that mentions `day`, holding only its periods of that day."""
    rows = session.query(
        f"SELECT s.counter, s.period_index, s.matchable_type, s.matchable_id, s.event_count, s.files, "
        f"c.root_url, c.export_type, c.finish_time, c.storage_size "
        f"FROM {qualified(SCHEMA, CATALOG_SLICES)} s JOIN {qualified(SCHEMA, CATALOG)} c "
        "USING (subscription_id, application_id, counter) "
        "WHERE s.subscription_id = ? AND s.application_id = ? AND s.period_day = ? "
        "ORDER BY s.counter, s.period_index, s.matchable_type NULLS FIRST, s.matchable_id",
        [app.subscription_id, app.application_id, day])
    periods: dict[int, dict[int, tuple[AllEventsSlice | None, list[MatchedSlice]]]] = {}
    facts: dict[int, tuple] = {}
    for counter, index, m_type, m_id, count, files, root_url, export_type, finish, size in rows:
        facts[counter] = (root_url, export_type, finish, size)
        all_events, matched = periods.setdefault(counter, {}).get(index, (None, []))
        if m_type is None:
            all_events = AllEventsSlice(tuple(json.loads(files)), count)
        else:
            matched.append(MatchedSlice(MatchableType(m_type), m_id, tuple(json.loads(files)), count))
        periods[counter][index] = (all_events, matched)
    return [
        _entry(counter, *facts[counter], BillOfMaterials(periods=tuple(
            Period(day, all_events, tuple(matched)) for _, (all_events, matched) in sorted(by_index.items()))))
        for counter, by_index in periods.items()
    ]


def exports_with_definitions(session: WarehouseSession, app: AppLocation) -> list[ExportEntry]:
    rows = session.query(
        f"SELECT counter, root_url, export_type, finish_time, storage_size, definition_files "
        f"FROM {qualified(SCHEMA, CATALOG)} WHERE subscription_id = ? AND application_id = ? "
        "AND definition_files <> '{}' ORDER BY counter", [app.subscription_id, app.application_id])
    by_key = {t.manifest_key: t for t in DefinitionTable}
    return [
        _entry(counter, root_url, export_type, finish, size, BillOfMaterials(definition_files={
            by_key[key]: tuple(files) for key, files in json.loads(definitions).items()}))
        for counter, root_url, export_type, finish, size, definitions in rows
    ]


def cataloged_exports(session: WarehouseSession, app: AppLocation) -> list[ExportEntry]:
    """Every cataloged export, its bill of materials reduced to which tables it mentions on which day.

    Enough to tell which exports each table-day is built from (`plan.build_sources`), never to load:
    each matched slice is a marker of its type, without files or counts.
    """
    mentions: dict[int, dict[date, tuple[bool, set[str]]]] = {}
    for counter, day, matchable_type in session.query(
            f"SELECT counter, period_day, matchable_type FROM {qualified(SCHEMA, CATALOG_SLICES)} "
            "WHERE subscription_id = ? AND application_id = ? GROUP BY ALL",
            [app.subscription_id, app.application_id]):
        has_all_events, types = mentions.setdefault(counter, {}).get(day, (False, set()))
        if matchable_type is not None:
            types.add(matchable_type)
        mentions[counter][day] = (has_all_events or matchable_type is None, types)
    by_key = {t.manifest_key: t for t in DefinitionTable}
    entries = []
    for counter, root_url, export_type, finish, size, definitions in session.query(
            f"SELECT counter, root_url, export_type, finish_time, storage_size, definition_files "
            f"FROM {qualified(SCHEMA, CATALOG)} WHERE subscription_id = ? AND application_id = ? ORDER BY counter",
            [app.subscription_id, app.application_id]):
        periods = tuple(
            Period(day, AllEventsSlice((), None) if has_all_events else None,
                   tuple(MatchedSlice(MatchableType(t), "*", (), None) for t in sorted(types)))
            for day, (has_all_events, types) in sorted(mentions.get(counter, {}).items()))
        entries.append(_entry(counter, root_url, export_type, finish, size, BillOfMaterials(
            definition_files={by_key[key]: tuple(files) for key, files in json.loads(definitions).items()},
            periods=periods)))
    return entries


def ledger_of_app(session: WarehouseSession, app: AppLocation) -> dict[tuple[str, date | None], ExportRefs]:
    """(table, day) -> the exports it was last built from; day is None for a definition table."""
    return _read_ledger(session, app, "", [])


def ledger_of_day(session: WarehouseSession, app: AppLocation, day: date) -> dict[str, ExportRefs]:
    return {table: refs for (table, _), refs in _read_ledger(session, app, " AND period_day = ?", [day]).items()}


def ledger_of_definitions(session: WarehouseSession, app: AppLocation) -> dict[str, ExportRefs]:
    return {table: refs for (table, _), refs in _read_ledger(session, app, " AND period_day IS NULL", []).items()}


def _read_ledger(session: WarehouseSession, app: AppLocation, condition: str, params: list
                 ) -> dict[tuple[str, date | None], ExportRefs]:
    rows = session.query(
        f"SELECT table_name, period_day, built_from FROM {qualified(SCHEMA, LEDGER)} "
        f"WHERE subscription_id = ? AND application_id = ?{condition}",
        [app.subscription_id, app.application_id, *params])
    return {(table, day): frozenset((c, folder) for c, folder in json.loads(built_from))
            for table, day, built_from in rows}


def write_ledger(session: WarehouseSession, app: AppLocation, run_id: str, rows: Iterable[LedgerRow]) -> None:
    """Replace each row's (table, day) entry; call in the transaction that replaced the rows themselves."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for row in rows:
        session.delete(SCHEMA, LEDGER, {"subscription_id": app.subscription_id,
                                        "application_id": app.application_id,
                                        "table_name": row.table_name, "period_day": row.period_day})
        session.execute(
            f"INSERT INTO {qualified(SCHEMA, LEDGER)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [app.subscription_id, app.application_id, row.table_name, row.period_day,
             json.dumps(sorted(row.built_from)), row.row_count, now, run_id])


def write_load_log(session: WarehouseSession, app: AppLocation, run_id: str, rows: Iterable[LoadLogRow]) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    records = [{
        "loaded_at": now, "run_id": run_id, "subscription_id": app.subscription_id,
        "application_id": app.application_id, "table_name": r.table_name, "period_day": r.period_day,
        "export_counter": r.export_counter, "matchable_id": r.matchable_id, "files": json.dumps(list(r.files)),
        "expected_rows": r.expected_rows, "loaded_rows": r.loaded_rows,
    } for r in rows]
    if records:
        session.insert(SCHEMA, LOAD_LOG, pa.Table.from_pylist(records, schema=_LOG_SCHEMA))


def _entry(counter: int, root_url: str | None, export_type: str | None, finish_time: str | None,
           storage_size: int | None, bom: BillOfMaterials) -> ExportEntry:
    return ExportEntry(counter=counter, root_url=root_url,
                       export_type=tuple(json.loads(export_type)) if export_type else None,
                       finish_time=finish_time, storage_size=storage_size, bom=bom)


def _slice_rows(app: AppLocation, entries: Iterable[ExportEntry]) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in _SLICE_SCHEMA.names}

    def add(entry: ExportEntry, index: int, period: Period, m_type: str | None, m_id: str | None,
            count: int | None, files: Sequence[str]) -> None:
        for name, value in zip(_SLICE_SCHEMA.names, (
                app.subscription_id, app.application_id, entry.counter, period.day, index, m_type, m_id,
                count, json.dumps(list(files)))):
            columns[name].append(value)

    for entry in entries:
        for index, period in enumerate(entry.bom.periods):
            if period.all_events is not None:
                add(entry, index, period, None, None, period.all_events.event_count, period.all_events.files)
            for m in period.matched_events:
                add(entry, index, period, m.matchable_type.value, m.matchable_id, m.event_count, m.files)
    return pa.Table.from_pydict(columns, schema=_SLICE_SCHEMA)
