"""The pipeline's own tables, in a schema of their own: the export catalog and the load log.

The catalog keeps every manifest entry ever seen, with its bill of materials, because Pendo's manifest
only lists the last 30 days: a day must stay reloadable after its export rotated out. Slices are
stored one row each, so planning a day reads only the exports that mention it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Sequence

import pyarrow as pa

from pendo_assets.pendo.models import (AllEventsSlice, BillOfMaterials, ExportEntry, ExportManifest,
                                       MatchedSlice, Period)
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, MatchableType
from pendo_assets.warehouse.base import WarehouseSession
from pendo_assets.warehouse.sql import qualified, quote_ident

SCHEMA = "PENDO_DATASYNC"
CATALOG = "EXPORT_CATALOG"
CATALOG_SLICES = "EXPORT_CATALOG_SLICES"
LOAD_LOG = "LOAD_LOG"

_DDL = {
    CATALOG: """subscription_id VARCHAR, application_id VARCHAR, counter BIGINT, export_folder VARCHAR,
        root_url VARCHAR, export_type VARCHAR, finish_time VARCHAR, storage_size BIGINT,
        bom_timestamp VARCHAR, number_of_files BIGINT, definition_files VARCHAR,
        first_seen_at TIMESTAMP, first_seen_by_run VARCHAR""",
    CATALOG_SLICES: """subscription_id VARCHAR, application_id VARCHAR, counter BIGINT, period_day DATE,
        period_index INTEGER, matchable_type VARCHAR, matchable_id VARCHAR, event_count BIGINT,
        files VARCHAR""",
    LOAD_LOG: """loaded_at TIMESTAMP, run_id VARCHAR, subscription_id VARCHAR, application_id VARCHAR,
        table_name VARCHAR, period_day DATE, export_counter BIGINT, matchable_id VARCHAR, files VARCHAR,
        expected_rows BIGINT, loaded_rows BIGINT""",
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
    """
    ensure_bookkeeping(session)
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
