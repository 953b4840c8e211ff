"""What a correct loader holds after loading every published export in counter order.

Computed from the world and the export plans, never from the written files, following Pendo's
documented update rules: a day's rows come from the latest export carrying it with allEvents,
then each later retroactive block replaces the matches of the objects it re-tagged; definitions
are the latest full export's snapshot, upserted by later retroactive ones. A period whose listed
file never arrived is refused by a correct loader, so it changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pendo_assets.generator.clock import EPOCH
from pendo_assets.generator.events import DayVersion, day_events
from pendo_assets.generator.matching import RuleIndex
from pendo_assets.generator.schedule import ExportPlan
from pendo_assets.generator.world import AppWorld, MatchableKind

ALLEVENTS_TABLE = "ALLEVENTS"
GUIDES_TABLE = "GUIDES"
MATCHED_TABLES = {kind.value: kind.matched_table for kind in MatchableKind}


@dataclass
class Truth:
    """Event ids per day and table (empty when generated without ids), definitions, and row counts.

    With ids, also the instants rows carry, per day and in UTC, whichever encoding their files use: each
    event's `browserTimestamp` by event id, and by matchable id the `lastUpdatedAt` of its matched rows
    (the moment of the export they came from).
    """

    allevents: dict[date, set[str]]
    matched: dict[str, dict[date, set[tuple[str, str]]]]
    definitions: dict[str, dict[str, dict]]
    event_counts: dict[tuple[str, date], int]
    browser_timestamps: dict[date, dict[str, datetime]] = field(default_factory=dict)
    matched_updated_at: dict[date, dict[str, datetime]] = field(default_factory=dict)


@dataclass
class _DayState:
    """The export moment each object's matches of a day were computed at; None: the object has none."""

    version: DayVersion
    base_moment: datetime | None
    overrides: dict[str, datetime] = field(default_factory=dict)

    def moment_for(self, matchable_id: str) -> datetime | None:
        return self.overrides.get(matchable_id, self.base_moment)


def compute_truth(world: AppWorld, published: list[ExportPlan], with_event_ids: bool,
                  manifest_entries: list[dict]) -> Truth:
    """With `with_event_ids` every day is regenerated to collect its ids; without, the counts come from
    the bills of materials replayed by the same rules, which needs no second pass over the events."""
    definitions = _definitions(world, published)
    if not with_event_ids:
        return Truth(allevents={}, matched={table: {} for table in MATCHED_TABLES.values()},
                     definitions=definitions, event_counts=_counts_from_boms(published, manifest_entries))
    truth = Truth(allevents={}, matched={table: {} for table in MATCHED_TABLES.values()},
                  definitions=definitions, event_counts={})
    for day, state in sorted(_day_states(published).items()):
        rule_indexes = _rule_indexes(world, state)
        event_ids: set[str] = set()
        instants = truth.browser_timestamps[day] = {}
        updated_at = truth.matched_updated_at[day] = {}
        matched: dict[str, set[tuple[str, str]]] = {table: set() for table in MATCHED_TABLES.values()}
        for event in day_events(world, day, state.version):
            event_id = event.record["eventId"]
            instants[event_id] = EPOCH + timedelta(milliseconds=event.record["browserTimestamp"])
            if state.base_moment is not None:
                event_ids.add(event_id)
            for rules in rule_indexes:
                for matchable in rules.matches(event, state.version):
                    matched[matchable.kind.matched_table].add((matchable.matchable_id, event_id))
                    updated_at[matchable.matchable_id] = state.moment_for(matchable.matchable_id)
        if state.base_moment is not None:
            truth.allevents[day] = event_ids
            truth.event_counts[(ALLEVENTS_TABLE, day)] = len(event_ids)
        for table, pairs in matched.items():
            truth.matched[table][day] = pairs
            truth.event_counts[(table, day)] = len(pairs)
    return truth


def _day_states(published: list[ExportPlan]) -> dict[date, _DayState]:
    states: dict[date, _DayState] = {}
    for plan in published:
        for period in plan.periods:
            if period.loses_file:
                continue
            if period.is_full:
                states[period.day] = _DayState(period.version, plan.timestamp)
                continue
            state = states.setdefault(period.day, _DayState(period.version, None))
            state.overrides.update((matchable.matchable_id, plan.timestamp) for matchable in period.rematched)
    return states


def _rule_indexes(world: AppWorld, state: _DayState) -> list[RuleIndex]:
    by_moment: dict[datetime, list] = defaultdict(list)
    for matchable in world.matchables:
        moment = state.moment_for(matchable.matchable_id)
        if moment is not None:
            by_moment[moment].append(matchable)
    return [RuleIndex.at(matchables, moment) for moment, matchables in by_moment.items()]


def _counts_from_boms(published: list[ExportPlan], manifest_entries: list[dict]
                      ) -> dict[tuple[str, date], int]:
    all_events: dict[date, int] = {}
    matched: dict[date, dict[tuple[str, str], int]] = {}
    for plan, entry in zip(published, manifest_entries):
        for period_plan, period in zip(plan.periods, entry["timeDependent"]):
            if period_plan.loses_file:
                continue
            day = period_plan.day
            if "allEvents" in period:
                all_events[day] = period["allEvents"]["eventCount"]
                matched[day] = {}
            by_object = matched.setdefault(day, {})
            for matched_slice in period.get("matchedEvents", []):
                by_object[(matched_slice["type"], matched_slice["id"])] = matched_slice["eventCount"]
    counts = {(ALLEVENTS_TABLE, day): rows for day, rows in all_events.items()}
    for day, by_object in matched.items():
        for table in MATCHED_TABLES.values():
            counts[(table, day)] = 0
        for (object_type, _), rows in by_object.items():
            counts[(MATCHED_TABLES[object_type], day)] += rows
    return counts


def _definitions(world: AppWorld, published: list[ExportPlan]) -> dict[str, dict[str, dict]]:
    definitions: dict[str, dict[str, dict]] = {kind.definitions_table: {} for kind in MatchableKind}
    definitions[GUIDES_TABLE] = {}
    for plan in published:
        moment = plan.timestamp
        if plan.has_all_definitions:
            definitions = {table: {} for table in definitions}
            definitions[GUIDES_TABLE] = {
                guide.guide_id: {"name": guide.name, "rulesUpdatedAt": None, "deletedAt": None,
                                 "softDeleteMethod": None}
                for guide in world.guides}
        for matchable in world.matchables if plan.has_all_definitions else plan.changed_definitions:
            definitions[matchable.kind.definitions_table][matchable.matchable_id] = {
                "name": matchable.name_at(moment),
                "rulesUpdatedAt": matchable.rule_at(moment).effective_at,
                "deletedAt": matchable.deleted_at_as_of(moment),
                "softDeleteMethod": matchable.soft_delete_method,
            }
    return definitions
