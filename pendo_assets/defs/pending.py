"""The runs to request for pending work: definition tables and (table, day) pairs, grouped into ranges.

What is pending comes from one of two places:

* `pending_from_warehouse` (the headless `sync`): whatever the warehouse's own ledger lacks, the only
  record that decides what is loaded (see `loading/ledger.py`).
* `pending_from_history` (the sensor, which must not open the warehouse while a run may hold its
  lock): the table-days new manifest entries touch, less those Dagster's materialization history
  obviously has (each materialization records the exports, counter and folder, its plan included).
  History is only a hint to avoid requesting finished work: every run checks the warehouse again
  before loading a day, and `sync` rebuilds whatever the warehouse lacks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable

import dagster as dg

from pendo_assets.defs.assets import DAYS_PER_BACKFILL_RUN, LOADED_COUNTERS, LOADED_EXPORTS, AppAssets
from pendo_assets.loading.ledger import OutOfDate
from pendo_assets.pendo.models import ExportEntry
from pendo_assets.pendo.plan import definition_tables_touched, tables_touched
from pendo_assets.pendo.tables import DefinitionTable, EventTable


@dataclass
class DayWork:
    tables: set[EventTable] = field(default_factory=set)
    counters: set[int] = field(default_factory=set)


@dataclass
class PendingWork:
    app_assets: AppAssets
    partitions: dg.TimeWindowPartitionsDefinition
    definitions: dict[DefinitionTable, set[int]] = field(default_factory=dict)
    days: dict[date, DayWork] = field(default_factory=dict)
    outside_partitions: dict[date, set[int]] = field(default_factory=dict)
    folders: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Daily partitions without exclusions are exactly the days from the first to the last key; asking
        # Dagster per day costs about half a millisecond, seconds for a 3-year export.
        first, last = self.partitions.get_first_partition_key(), self.partitions.get_last_partition_key()
        self._first = date.fromisoformat(first) if first else date.max
        self._last = date.fromisoformat(last) if last else date.min

    def has_partition(self, day: date) -> bool:
        return self._first <= day <= self._last

    def outside_partitions_warning(self) -> str | None:
        """Days of the exports that have no partition, by cause, with the exports that carry them."""
        if not self.outside_partitions:
            return None
        first = self._first
        parts = []
        for label, days, advice in (
                (f"before the first partition ({first})", [d for d in self.outside_partitions if d < first],
                 "to load them, lower PENDO_FIRST_DAY, then backfill them or run `pendo-datasync sync`"),
                ("after the last complete UTC day", [d for d in self.outside_partitions if d >= first],
                 "Pendo's days are UTC dates, so the export or this machine's clock is wrong; once the day is "
                 "complete, backfill it or run `pendo-datasync sync`")):
            if days:
                counters = sorted({c for d in days for c in self.outside_partitions[d]})
                parts.append(f"{len(days)} day(s) {label}, {min(days)} .. {max(days)} in exports "
                             f"{', '.join(map(str, counters))}, were not requested; {advice}")
        return f"{self.app_assets.app.label}: " + "; ".join(parts) + "."

    def add_definitions(self, table: DefinitionTable, counters: Iterable[int]) -> None:
        self.definitions.setdefault(table, set()).update(counters)

    def add_table_day(self, table: EventTable, day: date, counters: Iterable[int]) -> None:
        if not self.has_partition(day):
            self.outside_partitions.setdefault(day, set()).update(counters)
            return
        day_work = self.days.setdefault(day, DayWork())
        day_work.tables.add(table)
        day_work.counters.update(counters)

    @property
    def table_days(self) -> int:
        return sum(len(work.tables) for work in self.days.values())

    @property
    def definition_counters(self) -> list[int]:
        return sorted({c for counters in self.definitions.values() for c in counters})

    def run_requests(self) -> list[dg.RunRequest]:
        app = self.app_assets.app
        tags = {"pendo/subscription_id": app.subscription_id, "pendo/application_id": app.application_id}
        requests = []
        if self.definitions:
            counters = "+".join(map(str, self.definition_counters))
            requests.append(dg.RunRequest(
                run_key=f"definitions@{counters}{self._folders_digest(self.definition_counters)}",
                asset_selection=[self.app_assets.definition_key(t) for t in sorted(self.definitions, key=_order)],
                tags={**tags, "pendo/export_counters": counters}))
        for days, tables, counters in self.day_ranges():
            counter_text = "+".join(map(str, sorted(counters)))
            digest = self._folders_digest(counters)
            selection = [self.app_assets.event_key(t) for t in sorted(tables, key=list(EventTable).index)]
            run_tags = {**tags, "pendo/export_counters": counter_text}
            if len(days) == 1:
                requests.append(dg.RunRequest(run_key=f"{days[0]}@{counter_text}{digest}",
                                              partition_key=days[0].isoformat(),
                                              asset_selection=selection, tags=run_tags))
            else:
                requests.append(dg.RunRequest(
                    run_key=f"{days[0]}..{days[-1]}@{counter_text}{digest}", asset_selection=selection,
                    tags={**run_tags, "dagster/asset_partition_range_start": days[0].isoformat(),
                          "dagster/asset_partition_range_end": days[-1].isoformat()}))
        return requests

    def _folders_digest(self, counters: Iterable[int]) -> str:
        """Run keys are never reused, and a rewritten manifest may give a counter another folder."""
        text = ",".join(f"{c}={self.folders.get(c)}" for c in sorted(counters))
        return "#" + hashlib.sha1(text.encode()).hexdigest()[:8]

    def day_ranges(self) -> list[tuple[list[date], frozenset[EventTable], set[int]]]:
        """Consecutive days needing the same tables, up to a backfill run's worth: one run each.

        A 3-year one-time export becomes a few dozen runs instead of a thousand.
        """
        ranges: list[tuple[list[date], frozenset[EventTable], set[int]]] = []
        for day in sorted(self.days):
            tables = frozenset(self.days[day].tables)
            last = ranges[-1] if ranges else None
            if (last and last[1] == tables and last[0][-1] + timedelta(days=1) == day
                    and len(last[0]) < DAYS_PER_BACKFILL_RUN):
                last[0].append(day)
                last[2].update(self.days[day].counters)
            else:
                ranges.append(([day], tables, set(self.days[day].counters)))
        return ranges


def pending_from_warehouse(app_assets: AppAssets, out_of_date: OutOfDate,
                           partitions: dg.TimeWindowPartitionsDefinition) -> PendingWork:
    work = PendingWork(app_assets, partitions, folders=dict(out_of_date.folders))
    for table, counters in out_of_date.definitions.items():
        work.add_definitions(table, counters)
    for (table, day), counters in out_of_date.days.items():
        work.add_table_day(table, day, counters)
    return work


def pending_from_history(app_assets: AppAssets, entries: Iterable[ExportEntry],
                         partitions: dg.TimeWindowPartitionsDefinition, instance: dg.DagsterInstance) -> PendingWork:
    work = PendingWork(app_assets, partitions)
    loaded = _LoadedExports(instance)
    for entry in entries:
        work.folders[entry.counter] = entry.folder_name
        for table in definition_tables_touched(entry):
            if not loaded.includes(app_assets.definition_key(table), None, entry):
                work.add_definitions(table, [entry.counter])
        for day, tables in tables_touched(entry).items():
            for table in tables:
                if not work.has_partition(day) or not loaded.includes(app_assets.event_key(table), day, entry):
                    work.add_table_day(table, day, [entry.counter])
    return work


class _LoadedExports:
    """(counter, folder) of the exports the latest materialization of each (asset, partition) included."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.materialized: dict[dg.AssetKey, set[str]] = {}
        self.cache: dict[tuple[dg.AssetKey, date | None], frozenset[tuple[int, str | None]]] = {}

    def includes(self, key: dg.AssetKey, day: date | None, entry: ExportEntry) -> bool:
        if (key, day) not in self.cache:
            self.cache[(key, day)] = self._fetch(key, day)
        loaded = self.cache[(key, day)]
        return (entry.counter, entry.folder_name) in loaded or (entry.counter, None) in loaded

    def _fetch(self, key: dg.AssetKey, day: date | None) -> frozenset[tuple[int, str | None]]:
        if day is not None:
            if key not in self.materialized:
                self.materialized[key] = self.instance.get_materialized_partitions(key)
            if day.isoformat() not in self.materialized[key]:
                return frozenset()
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()] if day else None), limit=1).records
        if not records:
            return frozenset()
        metadata = records[0].asset_materialization.metadata
        exports = getattr(metadata.get(LOADED_EXPORTS), "value", None)
        if exports is not None:
            return frozenset((int(c), folder) for c, _, folder in (e.partition("=") for e in exports.split(",") if e))
        # Recorded before folders were: trust the counters.
        counters = getattr(metadata.get(LOADED_COUNTERS), "value", "") or ""
        return frozenset((int(c), None) for c in counters.split(",") if c)


def _order(table: DefinitionTable) -> int:
    return list(DefinitionTable).index(table)
