"""Raw events of one app and one UTC day, streamed so that no day is ever held in memory."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import Enum
from itertools import accumulate

from pendo_assets.generator.clock import epoch_days
from pendo_assets.generator.ids import derived_rng, pendo_id
from pendo_assets.generator.visitors import Visitor, anonymous_visitor_id
from pendo_assets.generator.world import AppWorld, DayVocabulary, Guide

DAY_MS = 86_400_000
# Events this close to midnight test UTC day bucketing on both sides of the boundary.
MIDNIGHT_EDGE_MS = 180_000
EDGE_EVENTS = 2
SESSION_MS = 1_800_000
EVENT_TYPE_WEIGHTS = (
    ("load", 24), ("click", 24), ("focus", 5), ("submit", 4), ("change", 5), ("track", 10),
    ("identify", 2), ("meta", 2), ("guideSeen", 6), ("guideAdvanced", 4), ("guideDismissed", 3),
    ("guideSnoozed", 1), ("guideActivity", 2), ("guideTimeout", 1), ("pollResponse", 2),
)
EVENT_TYPES = tuple(event_type for event_type, _ in EVENT_TYPE_WEIGHTS)
EVENT_TYPE_CUMULATIVE_WEIGHTS = tuple(accumulate(weight for _, weight in EVENT_TYPE_WEIGHTS))
FEATURE_EVENT_TYPES = frozenset({"click", "focus", "submit", "change"})
GUIDE_EVENT_TYPES = frozenset(event_type for event_type in EVENT_TYPES if event_type.startswith("guide"))
LATE_RESOLVING_TYPES = frozenset({"load", "click"})
QUERIES = ("?q=日本", "?tab=2&lang=de", "?filter=größe%3E10")
PLANS = ("Prämie", "Basic", "企業", "Enterprise")
ROLES = ("Geschäftsführer", "admin", "営業")
UI_LABELS = ("Speichern", "保存", "Save", "Enregistrer")
POLL_ANSWERS = ("5", "4", "1", "Sehr hilfreich 👍", "なし")


class DayVersion(Enum):
    """Pendo exports a day twice: the next morning, then again once late events have arrived."""

    UNFINALIZED = "unfinalized"
    FINALIZED = "finalized"


@dataclass(frozen=True)
class DaySize:
    base: int
    late: int

    def rows(self, version: DayVersion) -> int:
        return self.base + (self.late if version is DayVersion.FINALIZED else 0)


@dataclass(slots=True)
class Event:
    """An Avro record plus what matching rules look at."""

    record: dict[str, object]
    url_path: str | None
    element_path: str | None
    track_name: str | None
    resolves_at_finalization: bool


@dataclass(frozen=True)
class _DayContext:
    world: AppWorld
    day_number: int
    vocabulary: DayVocabulary


def day_size(world: AppWorld, day: date) -> DaySize:
    rng = derived_rng(*world.key, day, "size")
    low, high = world.app.events_per_day
    base = rng.randint(low, high)
    return DaySize(base=base, late=max(1, round(base * world.scenario.late_event_ratio)))


def day_events(world: AppWorld, day: date, version: DayVersion) -> Iterator[Event]:
    """Base events in time order, then (finalized only) late arrivals in no particular order."""
    size = day_size(world, day)
    context = _DayContext(world, epoch_days(day), world.vocabulary_on(day))
    start_ms = context.day_number * DAY_MS
    base_rng = derived_rng(*world.key, day, "base")
    for index in range(size.base):
        timestamp_ms = start_ms + _offset_ms(base_rng, index, size.base)
        yield _event(base_rng, context, timestamp_ms, may_resolve_late=True)
    if version is DayVersion.FINALIZED:
        late_rng = derived_rng(*world.key, day, "late")
        for _ in range(size.late):
            yield _event(late_rng, context, start_ms + late_rng.randrange(DAY_MS), may_resolve_late=False)


def _offset_ms(rng: random.Random, index: int, count: int) -> int:
    """Stratified offsets: increasing without sorting, with a few events right next to midnight."""
    edge_slot = MIDNIGHT_EDGE_MS / EDGE_EVENTS
    if index < EDGE_EVENTS:
        return int((index + rng.random()) * edge_slot)
    if index >= count - EDGE_EVENTS:
        return DAY_MS - MIDNIGHT_EDGE_MS + int((index - count + EDGE_EVENTS + rng.random()) * edge_slot)
    middle_slot = (DAY_MS - 2 * MIDNIGHT_EDGE_MS) / (count - 2 * EDGE_EVENTS)
    return MIDNIGHT_EDGE_MS + int((index - EDGE_EVENTS + rng.random()) * middle_slot)


def _event(rng: random.Random, context: _DayContext, timestamp_ms: int, may_resolve_late: bool) -> Event:
    world = context.world
    visitor = rng.choice(world.visitors)
    event_type = rng.choices(EVENT_TYPES, cum_weights=EVENT_TYPE_CUMULATIVE_WEIGHTS)[0]
    server_side = event_type == "track" and rng.random() < 0.3
    path = None if server_side else rng.choice(context.vocabulary.paths)
    element_path = rng.choice(context.vocabulary.selectors) if event_type in FEATURE_EVENT_TYPES else None
    track_name = rng.choice(context.vocabulary.track_names) if event_type == "track" else None
    record = {
        "periodId": context.day_number,
        "browserTimestamp": timestamp_ms,
        "eventId": pendo_id(rng),
        "visitorId": visitor.visitor_id,
        "accountId": visitor.account_id,
        "oldVisitorId": _old_visitor_id(rng, visitor, event_type),
        "eventType": event_type,
        "eventSource": "server" if server_side else "web",
        "url": _url(rng, world.app.hostname, path),
        "title": _title(path, world.app.display_name),
        "elementPath": element_path,
        **_client_fields(visitor, server_side),
        **_guide_fields(rng, world.guides, event_type),
        "propertiesJson": _properties_json(rng, event_type, track_name),
        "sessionId": f"{visitor.session_prefix}.{timestamp_ms // SESSION_MS}",
    }
    resolves_late = (may_resolve_late and event_type in LATE_RESOLVING_TYPES
                     and rng.random() < world.scenario.late_match_ratio)
    return Event(record, path, element_path, track_name, resolves_late)


def _old_visitor_id(rng: random.Random, visitor: Visitor, event_type: str) -> str | None:
    if event_type != "identify" or visitor.is_anonymous:
        return None
    return anonymous_visitor_id(rng)


def _url(rng: random.Random, hostname: str, path: str | None) -> str | None:
    if path is None:
        return None
    query = rng.choice(QUERIES) if rng.random() < 0.15 else ""
    return f"https://{hostname}{path}{query}"


def _title(path: str | None, app_name: str) -> str | None:
    if path is None:
        return None
    return f"{path.rstrip('/').rsplit('/', 1)[-1] or 'home'} – {app_name}"


def _client_fields(visitor: Visitor, server_side: bool) -> dict[str, object]:
    browser_fields = {
        "userAgent": visitor.user_agent, "browser": visitor.browser, "language": visitor.language,
        "remoteIp": visitor.remote_ip, "country": visitor.country, "region": visitor.region,
        "latitude": visitor.latitude, "longitude": visitor.longitude, "version": visitor.agent_version,
    }
    if server_side:
        return dict.fromkeys(browser_fields)
    return browser_fields


def _guide_fields(rng: random.Random, guides: tuple[Guide, ...], event_type: str) -> dict[str, object]:
    fields: dict[str, object] = dict.fromkeys(
        ("guideId", "guideStepId", "destinationStepId", "pollId", "pollResponse"))
    if event_type == "pollResponse":
        guide = rng.choice([guide for guide in guides if any(step.poll_id for step in guide.steps)])
        step = next(step for step in guide.steps if step.poll_id)
        fields.update(guideId=guide.guide_id, guideStepId=step.step_id, pollId=step.poll_id,
                      pollResponse=rng.choice(POLL_ANSWERS))
    elif event_type in GUIDE_EVENT_TYPES:
        guide = rng.choice(guides)
        position = rng.randrange(len(guide.steps))
        fields.update(guideId=guide.guide_id, guideStepId=guide.steps[position].step_id)
        if event_type == "guideAdvanced" and position + 1 < len(guide.steps):
            fields["destinationStepId"] = guide.steps[position + 1].step_id
    return fields


def _properties_json(rng: random.Random, event_type: str, track_name: str | None) -> str | None:
    if event_type == "track":
        properties: object = {"name": track_name,
                              "properties": {"plan": rng.choice(PLANS), "amount": rng.randint(1, 500)}}
    elif event_type == "meta":
        properties = {"metadata": {"role": rng.choice(ROLES)}}
    elif rng.random() < 0.25:
        properties = {"ui": {"label": rng.choice(UI_LABELS), "theme": rng.choice(("dark", "light"))}}
    else:
        return None
    return json.dumps(properties, ensure_ascii=False)
