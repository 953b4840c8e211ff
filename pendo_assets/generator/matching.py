"""Which matchables an event matches under the rules in force at one moment."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pendo_assets.generator.events import FEATURE_EVENT_TYPES, DayVersion, Event
from pendo_assets.generator.world import Matchable, MatchableKind


@dataclass(frozen=True)
class RuleIndex:
    by_rule_value: dict[MatchableKind, dict[str, tuple[Matchable, ...]]]

    @classmethod
    def at(cls, matchables: Iterable[Matchable], moment: datetime,
           include_deleted: bool = False) -> RuleIndex:
        """Pendo stops matching deleted objects; the ground truth keeps their old rows: `include_deleted`."""
        by_rule_value: dict[MatchableKind, dict[str, tuple[Matchable, ...]]] = {
            kind: {} for kind in MatchableKind}
        for matchable in matchables:
            if matchable.is_deleted_at(moment) and not include_deleted:
                continue
            by_value = by_rule_value[matchable.kind]
            value = matchable.rule_at(moment).value
            by_value[value] = by_value.get(value, ()) + (matchable,)
        return cls(by_rule_value)

    def matches(self, event: Event, version: DayVersion) -> Iterator[Matchable]:
        if event.resolves_at_finalization and version is DayVersion.UNFINALIZED:
            return
        if event.url_path is not None:
            yield from self.by_rule_value[MatchableKind.PAGE].get(event.url_path, ())
        if event.element_path is not None and event.record["eventType"] in FEATURE_EVENT_TYPES:
            yield from self.by_rule_value[MatchableKind.FEATURE].get(event.element_path, ())
        if event.track_name is not None:
            yield from self.by_rule_value[MatchableKind.TRACK_TYPE].get(event.track_name, ())
