"""Which matchables an event matches under the rules in force at one moment."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pendo_assets.generator.events import FEATURE_EVENT_TYPES, DayVersion, Event
from pendo_assets.generator.world import Matchable, MatchableKind


@dataclass(frozen=True)
class RuleIndex:
    """Pendo stops matching an object once it is deleted, so deleted objects are left out."""

    pages: dict[str, tuple[Matchable, ...]]
    features: dict[str, tuple[Matchable, ...]]
    track_types: dict[str, tuple[Matchable, ...]]

    @classmethod
    def at(cls, matchables: Iterable[Matchable], moment: datetime) -> RuleIndex:
        by_kind: dict[MatchableKind, dict[str, tuple[Matchable, ...]]] = {kind: {} for kind in MatchableKind}
        for matchable in matchables:
            if matchable.is_deleted_at(moment):
                continue
            by_value = by_kind[matchable.kind]
            value = matchable.rule_at(moment).value
            by_value[value] = by_value.get(value, ()) + (matchable,)
        return cls(by_kind[MatchableKind.PAGE], by_kind[MatchableKind.FEATURE],
                   by_kind[MatchableKind.TRACK_TYPE])

    def matches(self, event: Event, version: DayVersion) -> Iterator[Matchable]:
        if not event.resolution.matches_in(version):
            return
        if event.url_path is not None:
            yield from self.pages.get(event.url_path, ())
        if event.element_path is not None and event.record["eventType"] in FEATURE_EVENT_TYPES:
            yield from self.features.get(event.element_path, ())
        if event.track_name is not None:
            yield from self.track_types.get(event.track_name, ())
