"""What a correct loader holds after loading every published export, computed from the world itself.

Matches are the current rules applied to the latest exported version of each day; the world is built
so that this equals what Pendo's recurring, finalized and retroactive exports add up to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pendo_assets.generator.events import DayVersion, day_events
from pendo_assets.generator.matching import RuleIndex
from pendo_assets.generator.schedule import ExportPlan
from pendo_assets.generator.world import AppWorld, MatchableKind

ALLEVENTS_TABLE = "ALLEVENTS"
GUIDES_TABLE = "GUIDES"


@dataclass
class Truth:
    allevents: dict[date, set[str]]
    matched: dict[str, dict[date, set[tuple[str, str]]]]
    definitions: dict[str, dict[str, dict]]
    event_counts: dict[tuple[str, date], int]


def latest_day_versions(published: list[ExportPlan]) -> dict[date, DayVersion]:
    versions: dict[date, DayVersion] = {}
    for plan in published:
        versions.update((period.day, period.version) for period in plan.periods if period.is_full)
    return versions


def compute_truth(world: AppWorld, published: list[ExportPlan]) -> Truth:
    moment = published[-1].timestamp
    rules = RuleIndex.at(world.matchables, moment, include_deleted=True)
    truth = Truth(allevents={}, matched={kind.matched_table: {} for kind in MatchableKind},
                  definitions=_definitions(world, moment), event_counts={})
    for day, version in sorted(latest_day_versions(published).items()):
        event_ids: set[str] = set()
        matched: dict[str, set[tuple[str, str]]] = {kind.matched_table: set() for kind in MatchableKind}
        for event in day_events(world, day, version):
            event_id = event.record["eventId"]
            event_ids.add(event_id)
            for matchable in rules.matches(event, version):
                matched[matchable.kind.matched_table].add((matchable.matchable_id, event_id))
        truth.allevents[day] = event_ids
        truth.event_counts[(ALLEVENTS_TABLE, day)] = len(event_ids)
        for table, pairs in matched.items():
            truth.matched[table][day] = pairs
            truth.event_counts[(table, day)] = len(pairs)
    return truth


def _definitions(world: AppWorld, moment: datetime) -> dict[str, dict[str, dict]]:
    definitions: dict[str, dict[str, dict]] = {kind.definitions_table: {} for kind in MatchableKind}
    for matchable in world.matchables:
        definitions[matchable.kind.definitions_table][matchable.matchable_id] = {
            "name": matchable.name_at(moment),
            "rulesUpdatedAt": matchable.rule_at(moment).effective_at,
            "deletedAt": matchable.deleted_at_as_of(moment),
            "softDeleteMethod": matchable.soft_delete_method,
        }
    definitions[GUIDES_TABLE] = {
        guide.guide_id: {"name": guide.name, "rulesUpdatedAt": None, "deletedAt": None,
                         "softDeleteMethod": None}
        for guide in world.guides}
    return definitions
