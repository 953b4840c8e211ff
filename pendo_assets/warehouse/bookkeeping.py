"""The pipeline's own tables, in a schema of their own: the export catalog, the ledger and the load log.

The catalog keeps every manifest entry ever seen, with its bill of materials, because Pendo's manifest
only lists the last 30 days: a day must stay reloadable after its export rotated out. Slices are
stored one row each, so planning a day reads only the exports that mention it.

The ledger is the record of what is loaded: per table-day (and per definition table), its latest row names
the exports it was last built from, written in the same transaction as its rows. A warehouse that is
rebuilt, restored from a backup or replaced therefore says itself what it lacks, whatever Dagster's
history remembers. The load log is the history: every slice each run loaded.

Every app shares these tables, so inside a transaction they are only ever inserted into: in Snowflake,
DELETE, UPDATE and MERGE on one table wait for each other, and one app's killed load would stall every
other app at its bookkeeping. Readers take the latest row per key (a catalog entry's latest `version`, a
table-day's latest `loaded_at`); `compact_bookkeeping` deletes the superseded rows, outside any transaction.
"""

from __future__ import annotations

import json
import uuid
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
        first_seen_at TIMESTAMP, first_seen_by_run VARCHAR, version VARCHAR""",
    CATALOG_SLICES: """subscription_id VARCHAR, application_id VARCHAR, counter BIGINT, period_day DATE,
        period_index INTEGER, matchable_type VARCHAR, matchable_id VARCHAR, event_count BIGINT,
        files VARCHAR, version VARCHAR""",
    LEDGER: """subscription_id VARCHAR, application_id VARCHAR, table_name VARCHAR, period_day DATE,
        built_from VARCHAR, row_count BIGINT, loaded_at TIMESTAMP, run_id VARCHAR""",
    LOAD_LOG: """loaded_at TIMESTAMP, run_id VARCHAR, subscription_id VARCHAR, application_id VARCHAR,
        table_name VARCHAR, period_day DATE, export_counter BIGINT, matchable_id VARCHAR, files VARCHAR,
        expected_rows BIGINT, loaded_rows BIGINT""",
    METADATA_CATALOG: """subscription_id VARCHAR, kind VARCHAR, counter BIGINT, export_folder VARCHAR,
        root_url VARCHAR, finish_time VARCHAR, bom_timestamp VARCHAR, record_files VARCHAR, record_count BIGINT,
        schema_files VARCHAR, first_seen_at TIMESTAMP, first_seen_by_run VARCHAR, version VARCHAR""",
}
# Tables whose entries are recorded again when an export is redelivered in another folder: each recording is a
# `version` of the entry, and its slices carry the same version.
VERSIONED = (CATALOG, CATALOG_SLICES, METADATA_CATALOG)
# What rows written before versions existed are versioned as; each key had one, as earlier code replaced them.
UNVERSIONED = "0"
# Which rows of each table are one key's, and which of them is the latest.
_KEYS = {CATALOG: ("subscription_id", "application_id", "counter"),
         METADATA_CATALOG: ("subscription_id", "kind", "counter"),
         LEDGER: ("subscription_id", "application_id", "table_name", "period_day")}
_LATEST_FIRST = {CATALOG: "first_seen_at DESC, version DESC", METADATA_CATALOG: "first_seen_at DESC, version DESC",
                 LEDGER: "loaded_at DESC, run_id DESC"}

_SLICE_SCHEMA = pa.schema([
    ("subscription_id", pa.string()), ("application_id", pa.string()), ("counter", pa.int64()),
    ("period_day", pa.date32()), ("period_index", pa.int32()), ("matchable_type", pa.string()),
    ("matchable_id", pa.string()), ("event_count", pa.int64()), ("files", pa.string()), ("version", pa.string()),
])
_CATALOG_SCHEMA = pa.schema([
    ("subscription_id", pa.string()), ("application_id", pa.string()), ("counter", pa.int64()),
    ("export_folder", pa.string()), ("root_url", pa.string()), ("export_type", pa.string()),
    ("finish_time", pa.string()), ("storage_size", pa.int64()), ("bom_timestamp", pa.string()),
    ("number_of_files", pa.int64()), ("definition_files", pa.string()), ("first_seen_at", pa.timestamp("us")),
    ("first_seen_by_run", pa.string()), ("version", pa.string()),
])
_METADATA_CATALOG_SCHEMA = pa.schema([
    ("subscription_id", pa.string()), ("kind", pa.string()), ("counter", pa.int64()),
    ("export_folder", pa.string()), ("root_url", pa.string()), ("finish_time", pa.string()),
    ("bom_timestamp", pa.string()), ("record_files", pa.string()), ("record_count", pa.int64()),
    ("schema_files", pa.string()), ("first_seen_at", pa.timestamp("us")), ("first_seen_by_run", pa.string()),
    ("version", pa.string()),
])
_LEDGER_SCHEMA = pa.schema([
    ("subscription_id", pa.string()), ("application_id", pa.string()), ("table_name", pa.string()),
    ("period_day", pa.date32()), ("built_from", pa.string()), ("row_count", pa.int64()),
    ("loaded_at", pa.timestamp("us")), ("run_id", pa.string()),
])
# A catalog entry's slices are those its version recorded.
_SAME_VERSION = ("ON s.subscription_id = c.subscription_id AND s.application_id = c.application_id "
                 "AND s.counter = c.counter AND s.version = c.version")
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
    """Create what is missing, in one look at the schema; tables from before versions get their `version`."""
    existing: dict[str, set[str]] = {}
    for table, column in session.query(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?", [SCHEMA]):
        existing.setdefault(str(table).upper(), set()).add(str(column).lower())
    if not existing:
        session.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}")
    for table, columns in _DDL.items():
        if table not in existing:
            session.execute(f"CREATE TABLE IF NOT EXISTS {qualified(SCHEMA, table)} ({columns})")
        elif table in VERSIONED and "version" not in existing[table]:
            session.execute(f"ALTER TABLE {qualified(SCHEMA, table)} ADD COLUMN IF NOT EXISTS version VARCHAR")
            session.execute(f"UPDATE {qualified(SCHEMA, table)} SET version = ? WHERE version IS NULL", [UNVERSIONED])


def compact_bookkeeping(session: WarehouseSession) -> int:
    """Delete the rows a later one supersedes (catalog versions, ledger rows), each table in a statement of its own
    outside any transaction; the rows deleted. Readers never need it: it only keeps the tables small."""
    deleted = 0
    for table in (CATALOG, METADATA_CATALOG, LEDGER):
        keys = _KEYS[table]
        same_key = " AND ".join(f"t.{k} IS NOT DISTINCT FROM l.{k}" for k in keys)
        superseded = ("t.version <> l.version" if table in VERSIONED
                      else "(t.loaded_at < l.loaded_at OR (t.loaded_at = l.loaded_at AND t.run_id < l.run_id))")
        latest = _latest(table, "", [])[0]
        if table == CATALOG:  # its slices first, by the versions the catalog names
            deleted += _deleted(session, f"DELETE FROM {qualified(SCHEMA, CATALOG_SLICES)} t USING {latest} l "
                                         f"WHERE {same_key} AND t.version <> l.version")
        deleted += _deleted(session, f"DELETE FROM {qualified(SCHEMA, table)} t USING {latest} l "
                                     f"WHERE {same_key} AND {superseded}")
    return deleted


def _deleted(session: WarehouseSession, sql: str) -> int:
    return int(session.query(sql)[0][0])


def _latest(table: str, condition: str, params: list) -> tuple[str, list]:
    """A subquery of `table`'s latest row per key (`condition` filters first: " WHERE ..."), and its params."""
    return (f"(SELECT * FROM {qualified(SCHEMA, table)}{condition} QUALIFY ROW_NUMBER() OVER "
            f"(PARTITION BY {', '.join(_KEYS[table])} ORDER BY {_LATEST_FIRST[table]}) = 1)", params)


def _latest_catalog(app: AppLocation) -> tuple[str, list]:
    return _latest(CATALOG, " WHERE subscription_id = ? AND application_id = ?",
                   [app.subscription_id, app.application_id])


def _latest_metadata_catalog(location: MetadataLocation) -> tuple[str, list]:
    return _latest(METADATA_CATALOG, " WHERE subscription_id = ? AND kind = ?",
                   [location.subscription_id, location.kind.value])


def record_manifest(session: WarehouseSession, app: AppLocation, manifest: ExportManifest,
                    folders: dict[int, str], run_id: str) -> list[int]:
    """Add the manifest's entries the catalog does not hold yet; returns their counters.

    An entry whose counter is known but whose folder changed (a rewritten manifest) is recorded again, as a new
    version that supersedes the old. Call `ensure_bookkeeping` first, outside any transaction.
    """
    latest, params = _latest_catalog(app)
    known = dict(session.query(f"SELECT counter, export_folder FROM {latest} c", params))
    new = [e for e in manifest.exports if known.get(e.counter) != folders[e.counter]]
    if not new:
        return []
    now, version = datetime.now(timezone.utc).replace(tzinfo=None), uuid.uuid4().hex
    session.insert(SCHEMA, CATALOG, pa.Table.from_pylist([{
        "subscription_id": app.subscription_id, "application_id": app.application_id, "counter": entry.counter,
        "export_folder": folders[entry.counter], "root_url": entry.root_url,
        "export_type": json.dumps(list(entry.export_type)) if entry.export_type is not None else None,
        "finish_time": entry.finish_time, "storage_size": entry.storage_size, "bom_timestamp": entry.bom.timestamp,
        "number_of_files": entry.bom.number_of_files,
        "definition_files": json.dumps({t.manifest_key: list(f) for t, f in entry.bom.definition_files.items()}),
        "first_seen_at": now, "first_seen_by_run": run_id, "version": version} for entry in new],
        schema=_CATALOG_SCHEMA))
    session.insert(SCHEMA, CATALOG_SLICES, _slice_rows(app, new, version))
    return [e.counter for e in new]


def record_metadata_manifest(session: WarehouseSession, location: MetadataLocation,
                             exports: Sequence[MetadataExport], folders: dict[int, str], run_id: str) -> list[int]:
    """Like `record_manifest`, for a visitor or account manifest: every export stays known after it rotates out."""
    latest, params = _latest_metadata_catalog(location)
    known = dict(session.query(f"SELECT counter, export_folder FROM {latest} c", params))
    new = [e for e in exports if known.get(e.counter) != folders[e.counter]]
    if not new:
        return []
    now, version = datetime.now(timezone.utc).replace(tzinfo=None), uuid.uuid4().hex
    session.insert(SCHEMA, METADATA_CATALOG, pa.Table.from_pylist([{
        "subscription_id": location.subscription_id, "kind": location.kind.value, "counter": e.counter,
        "export_folder": folders[e.counter], "root_url": e.root_url, "finish_time": e.finish_time,
        "bom_timestamp": e.timestamp, "record_files": json.dumps(list(e.record_files)),
        "record_count": e.record_count, "schema_files": json.dumps(list(e.schema_files)), "first_seen_at": now,
        "first_seen_by_run": run_id, "version": version} for e in new], schema=_METADATA_CATALOG_SCHEMA))
    return [e.counter for e in new]


def cataloged_metadata_exports(session: WarehouseSession, location: MetadataLocation) -> list[MetadataExport]:
    """Every visitor or account export ever seen, in counter order."""
    latest, params = _latest_metadata_catalog(location)
    rows = session.query(
        f"SELECT counter, root_url, finish_time, bom_timestamp, record_files, schema_files, record_count "
        f"FROM {latest} c ORDER BY counter", params)
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
    latest, params = _latest_catalog(app)
    rows = session.query(
        f"SELECT s.counter, s.period_index, s.matchable_type, s.matchable_id, s.event_count, s.files, "
        f"c.root_url, c.export_type, c.finish_time, c.storage_size "
        f"FROM {latest} c JOIN {qualified(SCHEMA, CATALOG_SLICES)} s {_SAME_VERSION} WHERE s.period_day = ? "
        "ORDER BY s.counter, s.period_index, s.matchable_type NULLS FIRST, s.matchable_id", [*params, day])
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
    latest, params = _latest_catalog(app)
    rows = session.query(
        f"SELECT counter, root_url, export_type, finish_time, storage_size, definition_files "
        f"FROM {latest} c WHERE definition_files <> '{{}}' ORDER BY counter", params)
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
    latest, params = _latest_catalog(app)
    for counter, day, matchable_type in session.query(
            f"SELECT s.counter, s.period_day, s.matchable_type FROM {latest} c "
            f"JOIN {qualified(SCHEMA, CATALOG_SLICES)} s {_SAME_VERSION} GROUP BY ALL", params):
        has_all_events, types = mentions.setdefault(counter, {}).get(day, (False, set()))
        if matchable_type is not None:
            types.add(matchable_type)
        mentions[counter][day] = (has_all_events or matchable_type is None, types)
    by_key = {t.manifest_key: t for t in DefinitionTable}
    entries = []
    for counter, root_url, export_type, finish, size, definitions in session.query(
            f"SELECT counter, root_url, export_type, finish_time, storage_size, definition_files "
            f"FROM {latest} c ORDER BY counter", params):
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
    latest, params = _latest(LEDGER, f" WHERE subscription_id = ? AND application_id = ?{condition}",
                             [app.subscription_id, app.application_id, *params])
    rows = session.query(f"SELECT table_name, period_day, built_from FROM {latest} l", params)
    return {(table, day): frozenset((c, folder) for c, folder in json.loads(built_from))
            for table, day, built_from in rows}


def write_ledger(session: WarehouseSession, app: AppLocation, run_id: str, rows: Iterable[LedgerRow]) -> None:
    """Record each (table, day) as built now, superseding its earlier rows; call in the transaction that replaced
    the rows themselves."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    records = [{"subscription_id": app.subscription_id, "application_id": app.application_id,
                "table_name": row.table_name, "period_day": row.period_day,
                "built_from": json.dumps(sorted(row.built_from)), "row_count": row.row_count, "loaded_at": now,
                "run_id": run_id} for row in rows]
    if records:
        session.insert(SCHEMA, LEDGER, pa.Table.from_pylist(records, schema=_LEDGER_SCHEMA))


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


def _slice_rows(app: AppLocation, entries: Iterable[ExportEntry], version: str) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in _SLICE_SCHEMA.names}

    def add(entry: ExportEntry, index: int, period: Period, m_type: str | None, m_id: str | None,
            count: int | None, files: Sequence[str]) -> None:
        for name, value in zip(_SLICE_SCHEMA.names, (
                app.subscription_id, app.application_id, entry.counter, period.day, index, m_type, m_id,
                count, json.dumps(list(files)), version)):
            columns[name].append(value)

    for entry in entries:
        for index, period in enumerate(entry.bom.periods):
            if period.all_events is not None:
                add(entry, index, period, None, None, period.all_events.event_count, period.all_events.files)
            for m in period.matched_events:
                add(entry, index, period, m.matchable_type.value, m.matchable_id, m.event_count, m.files)
    return pa.Table.from_pydict(columns, schema=_SLICE_SCHEMA)
