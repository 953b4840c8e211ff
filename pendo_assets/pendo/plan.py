"""Which export's files make up each table, per day: Pendo's update rules as pure functions.

For a day P, given every export ever seen that mentions P:

* ALLEVENTS(P) is the allEvents slice of the latest export (highest counter) carrying P with allEvents.
* The matched tables start from that same export's matchedEvents for P, which replace all matched
  rows of P; then every later block of P without allEvents (a retroactive re-export) is applied in
  counter order: each matchable it lists is replaced by its files, and an empty file list deletes it.

Definition tables are the latest non-retroactive export's definition files, upserted by id with the
definition files of later retroactive exports.

The result describes the final content of each table-day, not a sequence of edits, so loading it is
"delete the day, insert the slices" and always idempotent. A table-day is therefore up to date exactly
when it was last built from the same set of exports that mention it now (`build_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Mapping

from pendo_assets.pendo.models import ExportEntry, MatchedSlice, Period
from pendo_assets.pendo.tables import MATCHED_TABLES, DefinitionTable, EventTable, MatchableType


@dataclass(frozen=True)
class Slice:
    """Files of one export that hold some of a table-day's rows, with Pendo's count of those rows."""

    entry: ExportEntry = field(compare=False, repr=False)
    counter: int
    table: EventTable
    day: date
    files: tuple[str, ...]
    event_count: int | None
    matchable_type: MatchableType | None = None
    matchable_id: str | None = None

    def describe(self) -> str:
        what = "allEvents" if self.matchable_id is None else f"{self.matchable_type.value}/{self.matchable_id}"
        return f"export {self.counter}, day {self.day}, {what}"


@dataclass(frozen=True)
class TableDayPlan:
    table: EventTable
    day: date
    slices: tuple[Slice, ...]
    touched_by: tuple[int, ...]

    @property
    def expected_rows(self) -> int | None:
        counts = [s.event_count for s in self.slices]
        return None if any(c is None for c in counts) else sum(counts)


@dataclass(frozen=True)
class DayPlan:
    day: date
    tables: Mapping[EventTable, TableDayPlan]


@dataclass(frozen=True)
class DefinitionSource:
    entry: ExportEntry = field(compare=False, repr=False)
    counter: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class DefinitionPlan:
    table: DefinitionTable
    snapshot: DefinitionSource | None
    upserts: tuple[DefinitionSource, ...]
    touched_by: tuple[int, ...]


def plan_day(exports: Iterable[ExportEntry], day: date) -> DayPlan:
    blocks = [(entry, period) for entry in sorted(exports, key=lambda e: e.counter)
              for period in entry.periods_for(day)]
    base = max((i for i, (_, p) in enumerate(blocks) if p.all_events is not None), default=None)

    all_events: list[Slice] = []
    matched: dict[tuple[MatchableType, str], list[Slice]] = {}
    if base is not None:
        entry, period = blocks[base]
        all_events.append(Slice(entry, entry.counter, EventTable.ALLEVENTS, day,
                                period.all_events.files, period.all_events.event_count))
        for m in period.matched_events:
            matched.setdefault((m.matchable_type, m.matchable_id), []).append(_matched_slice(entry, day, m))
    for entry, period in blocks[(base + 1) if base is not None else 0:]:
        replaced: dict[tuple[MatchableType, str], list[Slice]] = {}
        for m in period.matched_events:
            replaced.setdefault((m.matchable_type, m.matchable_id), []).append(_matched_slice(entry, day, m))
        matched.update(replaced)

    slices_by_table: dict[EventTable, list[Slice]] = {EventTable.ALLEVENTS: all_events}
    for table in MATCHED_TABLES:
        slices_by_table[table] = []
    for key in sorted(matched, key=lambda k: (k[0].value, k[1])):
        for s in matched[key]:
            if s.files:
                slices_by_table[s.table].append(s)

    touched: dict[EventTable, set[int]] = {t: set() for t in EventTable}
    for entry, period in blocks:
        for table in _tables_touched_by_period(period):
            touched[table].add(entry.counter)
    return DayPlan(day=day, tables={
        t: TableDayPlan(t, day, tuple(slices_by_table[t]), tuple(sorted(touched[t]))) for t in EventTable})


def plan_definitions(exports: Iterable[ExportEntry]) -> dict[DefinitionTable, DefinitionPlan]:
    ordered = sorted(exports, key=lambda e: e.counter)
    plans = {}
    for table in DefinitionTable:
        carrying = [e for e in ordered if table in e.bom.definition_files]
        snapshot_at = max((i for i, e in enumerate(carrying) if not e.is_retroactive), default=None)
        snapshot = None
        if snapshot_at is not None:
            entry = carrying[snapshot_at]
            snapshot = DefinitionSource(entry, entry.counter, entry.bom.definition_files[table])
        later = carrying[(snapshot_at + 1) if snapshot_at is not None else 0:]
        plans[table] = DefinitionPlan(table, snapshot, tuple(
            DefinitionSource(e, e.counter, e.bom.definition_files[table]) for e in later),
            touched_by=tuple(e.counter for e in carrying))
    return plans


@dataclass(frozen=True)
class BuildSources:
    """The counters of every export each event table-day, and each definition table, is built from."""

    days: Mapping[tuple[EventTable, date], frozenset[int]]
    definitions: Mapping[DefinitionTable, frozenset[int]]


def build_sources(exports: Iterable[ExportEntry]) -> BuildSources:
    """Agrees with the plans' `touched_by`, but needs only which tables each export mentions per day."""
    days: dict[tuple[EventTable, date], set[int]] = {}
    definitions: dict[DefinitionTable, set[int]] = {}
    for entry in exports:
        for day, tables in tables_touched(entry).items():
            for table in tables:
                days.setdefault((table, day), set()).add(entry.counter)
        for table in definition_tables_touched(entry):
            definitions.setdefault(table, set()).add(entry.counter)
    return BuildSources({key: frozenset(c) for key, c in days.items()},
                        {table: frozenset(c) for table, c in definitions.items()})


def tables_touched(entry: ExportEntry) -> dict[date, frozenset[EventTable]]:
    """The event tables whose content on each day may change because of this export."""
    touched: dict[date, set[EventTable]] = {}
    for period in entry.bom.periods:
        touched.setdefault(period.day, set()).update(_tables_touched_by_period(period))
    return {day: frozenset(tables) for day, tables in touched.items() if tables}


def definition_tables_touched(entry: ExportEntry) -> frozenset[DefinitionTable]:
    return frozenset(entry.bom.definition_files)


def _tables_touched_by_period(period: Period) -> set[EventTable]:
    if period.all_events is not None:
        return set(EventTable)
    return {m.matchable_type.table for m in period.matched_events}


def _matched_slice(entry: ExportEntry, day: date, m: MatchedSlice) -> Slice:
    return Slice(entry, entry.counter, m.matchable_type.table, day, m.files, m.event_count,
                 m.matchable_type, m.matchable_id)
