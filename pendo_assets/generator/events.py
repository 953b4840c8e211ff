"""Raw events of one app and one UTC day, streamed so that no day is ever held in memory."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import Enum

from pendo_assets.generator.clock import epoch_days
from pendo_assets.generator.ids import derived_rng, pendo_id
from pendo_assets.generator.spec import MidnightEdge
from pendo_assets.generator.visitors import Visitor, anonymous_visitor_id
from pendo_assets.generator.world import AppWorld, Guide

DAY_MS = 86_400_000
SESSION_MS = 1_800_000
# The Pendo agent's event vocabulary (agent.pendo.io/events), weighted roughly like a web app's traffic.
EVENT_TYPE_WEIGHTS = (
    ("load", 24), ("click", 24), ("focus", 5), ("submit", 4), ("change", 5), ("track", 10),
    ("identify", 2), ("meta", 2), ("guideSeen", 6), ("guideAdvanced", 4), ("guideDismissed", 3),
    ("guideSnoozed", 1), ("guideSnoozeCanceled", 1), ("guideActivity", 2), ("guideTimeout", 1),
    ("guideNotSeen", 1), ("pollResponse", 2),
)
# Drawing from a table by index is several times faster than random.choices, which matters at millions.
EVENT_TYPE_TABLE = tuple(event_type for event_type, weight in EVENT_TYPE_WEIGHTS for _ in range(weight))
FEATURE_EVENT_TYPES = frozenset({"click", "focus", "submit", "change"})
GUIDE_EVENT_TYPES = frozenset(event_type for event_type, _ in EVENT_TYPE_WEIGHTS
                              if event_type.startswith("guide"))
LATE_RESOLVING_TYPES = frozenset({"load", "click"})
SERVER_SIDE_TRACK_SHARE = 0.3
QUERY_SHARE = 0.15
UI_PROPERTIES_SHARE = 0.25
QUERIES = ("?q=日本", "?tab=2&lang=de", "?filter=größe%3E10")
PLANS = ("Prämie", "Basic", "企業", "Enterprise")
ROLES = ("Geschäftsführer", "admin", "営業")
UI_LABELS = ("Speichern", "保存", "Save", "Enregistrer")
POLL_ANSWERS = ("5", "4", "1", "Sehr hilfreich 👍", "なし")
NO_CLIENT = (None,) * 9


class DayVersion(Enum):
    """Pendo exports a day twice: the next morning, then again once late events have arrived."""

    UNFINALIZED = "unfinalized"
    FINALIZED = "finalized"


class MatchResolution(Enum):
    """How an on-time event's matches change when its day is finalized (seed 001, "Finalized days")."""

    STABLE = "stable"
    LATE = "late"
    WITHDRAWN = "withdrawn"

    def matches_in(self, version: DayVersion) -> bool:
        if self is MatchResolution.LATE:
            return version is DayVersion.FINALIZED
        if self is MatchResolution.WITHDRAWN:
            return version is DayVersion.UNFINALIZED
        return True


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
    resolution: MatchResolution


@dataclass(frozen=True)
class _DayContext:
    world: AppWorld
    day_number: int
    paths: tuple[str, ...]
    selectors: tuple[str, ...]
    track_names: tuple[str, ...]
    titles: dict[str, str]
    polled_guides: tuple[Guide, ...]


def day_size(world: AppWorld, day: date) -> DaySize:
    rng = derived_rng(*world.key, day, "size")
    low, high = world.app.events_per_day
    total = rng.randint(low, high)
    ratio = world.scenario.late_event_ratio
    late = min(total - 1, max(1, round(total * ratio / (1 + ratio))))
    return DaySize(base=total - late, late=late)


def day_events(world: AppWorld, day: date, version: DayVersion) -> Iterator[Event]:
    """On-time events in time order, then (finalized only) late arrivals in no particular order."""
    size = day_size(world, day)
    vocabulary = world.vocabulary_on(day)
    context = _DayContext(
        world=world, day_number=epoch_days(day), paths=vocabulary.paths, selectors=vocabulary.selectors,
        track_names=vocabulary.track_names,
        titles={path: _title(path, world.app.display_name) for path in vocabulary.paths},
        polled_guides=tuple(guide for guide in world.guides if any(step.poll_id for step in guide.steps)),
    )
    start_ms = context.day_number * DAY_MS
    base_rng = derived_rng(*world.key, day, "base")
    edge = world.scenario.midnight
    for index in range(size.base):
        timestamp_ms = start_ms + _offset_ms(base_rng, index, size.base, edge)
        yield _event(base_rng, context, timestamp_ms, on_time=True)
    if version is DayVersion.FINALIZED:
        late_rng = derived_rng(*world.key, day, "late")
        for _ in range(size.late):
            yield _event(late_rng, context, start_ms + late_rng.randrange(DAY_MS), on_time=False)


def _offset_ms(rng: random.Random, index: int, count: int, edge: MidnightEdge) -> int:
    """Stratified offsets: increasing without sorting, the outermost ones right at midnight."""
    jitter = rng.random()
    if index == 0:
        return 0
    if index == count - 1:
        return DAY_MS - 1
    per_side = min(edge.events_per_side, count // 2)
    edge_slot = edge.window_ms / per_side
    if index < per_side:
        return int((index + jitter) * edge_slot)
    if index >= count - per_side:
        return DAY_MS - edge.window_ms + int((index - count + per_side + jitter) * edge_slot)
    middle_slot = (DAY_MS - 2 * edge.window_ms) / (count - 2 * per_side)
    return edge.window_ms + int((index - per_side + jitter) * middle_slot)


def _event(rng: random.Random, context: _DayContext, timestamp_ms: int, on_time: bool) -> Event:
    world = context.world
    random_fraction = rng.random
    visitor = rng.choice(world.visitors)
    event_type = EVENT_TYPE_TABLE[int(random_fraction() * len(EVENT_TYPE_TABLE))]
    server_side = event_type == "track" and random_fraction() < SERVER_SIDE_TRACK_SHARE
    path = None if server_side else rng.choice(context.paths)
    element_path = rng.choice(context.selectors) if event_type in FEATURE_EVENT_TYPES else None
    track_name = rng.choice(context.track_names) if event_type == "track" else None
    client = NO_CLIENT if server_side else visitor.client_fields
    record = {
        "periodId": context.day_number,
        "browserTimestamp": timestamp_ms,
        "eventId": pendo_id(rng),
        "visitorId": visitor.visitor_id,
        "accountId": visitor.account_id,
        "oldVisitorId": _old_visitor_id(rng, visitor, event_type),
        "eventType": event_type,
        "eventSource": "server" if server_side else "web",
        "url": None if path is None else _url(rng, world.app.hostname, path),
        "title": None if path is None else context.titles[path],
        "elementPath": element_path,
        "userAgent": client[0],
        "browser": client[1],
        "language": client[2],
        "remoteIp": client[3],
        "country": client[4],
        "region": client[5],
        "latitude": client[6],
        "longitude": client[7],
        "version": client[8],
        "guideId": None,
        "guideStepId": None,
        "destinationStepId": None,
        "pollId": None,
        "pollResponse": None,
        "propertiesJson": _properties_json(rng, event_type, track_name),
        "sessionId": f"{visitor.session_prefix}.{timestamp_ms // SESSION_MS}",
    }
    if event_type == "pollResponse" or event_type in GUIDE_EVENT_TYPES:
        _add_guide_fields(rng, context, event_type, record)
    resolution = MatchResolution.STABLE
    if on_time and event_type in LATE_RESOLVING_TYPES:
        draw = random_fraction()
        scenario = world.scenario
        if draw < scenario.late_match_ratio:
            resolution = MatchResolution.LATE
        elif draw < scenario.late_match_ratio + scenario.withdrawn_match_ratio:
            resolution = MatchResolution.WITHDRAWN
    return Event(record, path, element_path, track_name, resolution)


def _old_visitor_id(rng: random.Random, visitor: Visitor, event_type: str) -> str | None:
    if event_type != "identify" or visitor.is_anonymous:
        return None
    return anonymous_visitor_id(rng)


def _url(rng: random.Random, hostname: str, path: str) -> str:
    query = rng.choice(QUERIES) if rng.random() < QUERY_SHARE else ""
    return f"https://{hostname}{path}{query}"


def _title(path: str, app_name: str) -> str:
    return f"{path.rstrip('/').rsplit('/', 1)[-1] or 'home'} – {app_name}"


def _add_guide_fields(rng: random.Random, context: _DayContext, event_type: str, record: dict) -> None:
    if event_type == "pollResponse":
        guide = rng.choice(context.polled_guides)
        step = next(step for step in guide.steps if step.poll_id)
        record.update(guideId=guide.guide_id, guideStepId=step.step_id, pollId=step.poll_id,
                      pollResponse=rng.choice(POLL_ANSWERS))
        return
    guide = rng.choice(context.world.guides)
    position = rng.randrange(len(guide.steps))
    record["guideId"] = guide.guide_id
    record["guideStepId"] = guide.steps[position].step_id
    if event_type == "guideAdvanced" and position + 1 < len(guide.steps):
        record["destinationStepId"] = guide.steps[position + 1].step_id


def _properties_json(rng: random.Random, event_type: str, track_name: str | None) -> str | None:
    if event_type == "track":
        properties: object = {"name": track_name,
                              "properties": {"plan": rng.choice(PLANS), "amount": rng.randint(1, 500)}}
    elif event_type == "meta":
        properties = {"metadata": {"role": rng.choice(ROLES)}}
    elif rng.random() < UI_PROPERTIES_SHARE:
        properties = {"ui": {"label": rng.choice(UI_LABELS), "theme": rng.choice(("dark", "light"))}}
    else:
        return None
    return json.dumps(properties, ensure_ascii=False)
