"""The world of one app: its pages, features, track types and guides, and how they change over time."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import TypeVar

from pendo_assets.generator.ids import derived_rng, pendo_id
from pendo_assets.generator.spec import AppSpec, Lifecycle, Scenario, SubscriptionSpec
from pendo_assets.generator.visitors import Visitor, build_visitors


class MatchableKind(Enum):
    PAGE = "Page"
    FEATURE = "Feature"
    TRACK_TYPE = "TrackType"

    @property
    def matched_table(self) -> str:
        return {"Page": "MATCHEDPAGEEVENTS", "Feature": "MATCHEDFEATUREEVENTS",
                "TrackType": "MATCHEDTRACKTYPEEVENTS"}[self.value]

    @property
    def definitions_table(self) -> str:
        return {"Page": "PAGES", "Feature": "FEATURES", "TrackType": "TRACKTYPES"}[self.value]


PAGE_CATALOG = (
    ("Dashboard", "/dashboard"),
    ("Accounts", "/accounts"),
    ("Straßenverzeichnis", "/über/straße"),
    ("Reports", "/reports"),
    ("Settings", "/settings"),
    ("Billing", "/billing/invoices"),
    ("Pipeline", "/pipeline"),
    ("日本語ヘルプ", "/hilfe/日本"),
)
FEATURE_CATALOG = (
    ("Save contact", "button#save-contact"),
    ("Legacy export", "button[data-action='export-csv']"),
    ("Global search", "input[name='q']"),
    ("Add deal", "div.kanban > button.add-deal"),
    ("Nav: Reports", "nav a[href='/reports']"),
    ("Filter: Größe", "select#größe"),
    ("Invite teammate", "button.invite"),
    ("Dark mode toggle", "label.theme-toggle > input"),
)
TRACK_TYPE_CATALOG = (
    ("Report exported", "report_exported"),
    ("Deal closed", "deal_closed"),
    ("Ticket geöffnet", "ticket_geöffnet"),
    ("Upgrade clicked", "upgrade_clicked"),
)
GUIDE_CATALOG = (
    ("Welcome tour", 3),
    ("Neue Berichte 🎉", 1),
    ("NPS survey", 1),
    ("Release notes", 2),
)
GROUPS = ("Core", "Vertrieb", "Admin", None)
RENAMED_PAGE_NAME = "Übersicht"
UNMATCHED_PATHS = ("/login", "/help/faq", "/profile/ñandú", "/search")
UNMATCHED_SELECTORS = ("div.toast > button.close", "a.logo", "span#tooltip")
UNMATCHED_TRACK_NAMES = ("heartbeat", "debug_ping")
# Object ids that begin with '-' or '_' break naive file-name and CLI handling, so some must.
FORCED_FIRST_CHARS = {(MatchableKind.PAGE, 1): "-", (MatchableKind.FEATURE, 2): "_",
                      (MatchableKind.TRACK_TYPE, 0): "-", (MatchableKind.FEATURE, 3): "-"}


@dataclass(frozen=True)
class RuleVersion:
    effective_at: datetime
    value: str


@dataclass(frozen=True)
class UiPresence:
    """Days on which the UI offers a path, selector or track event name (until_day exclusive)."""

    value: str
    first_day: date | None = None
    until_day: date | None = None

    def shown_on(self, day: date) -> bool:
        return (self.first_day is None or day >= self.first_day) and (
            self.until_day is None or day < self.until_day)


@dataclass(frozen=True)
class NameChange:
    effective_at: datetime
    name: str


@dataclass(frozen=True)
class Matchable:
    kind: MatchableKind
    matchable_id: str
    created_at: datetime
    names: tuple[NameChange, ...]
    rules: tuple[RuleVersion, ...]
    ui: tuple[UiPresence, ...]
    deleted_at: datetime | None
    soft_delete_method: int
    group: str | None
    page_id: str | None = None

    def name_at(self, moment: datetime) -> str:
        return _latest(self.names, moment).name

    def rule_at(self, moment: datetime) -> RuleVersion:
        return _latest(self.rules, moment)

    def is_deleted_at(self, moment: datetime) -> bool:
        return self.deleted_at is not None and self.deleted_at <= moment

    def deleted_at_as_of(self, moment: datetime) -> datetime | None:
        return self.deleted_at if self.is_deleted_at(moment) else None

    def last_updated_at(self, moment: datetime) -> datetime:
        changes = [change.effective_at for change in (*self.names, *self.rules)]
        if self.deleted_at is not None:
            changes.append(self.deleted_at)
        return max(change for change in changes if change <= moment)


Change = TypeVar("Change", NameChange, RuleVersion)


@dataclass(frozen=True)
class GuideStep:
    step_id: str
    step_type: str
    poll_id: str | None


@dataclass(frozen=True)
class Guide:
    guide_id: str
    name: str
    created_at: datetime
    last_updated_at: datetime
    state: str
    launch_method: str | None
    steps: tuple[GuideStep, ...]


@dataclass(frozen=True)
class DayVocabulary:
    """What the UI offers on one day; events draw their url paths, selectors and track names from it."""

    paths: tuple[str, ...]
    selectors: tuple[str, ...]
    track_names: tuple[str, ...]


@dataclass(frozen=True)
class Calendar:
    first_export_day: date

    def date_of(self, day_number: int) -> date:
        return self.first_export_day + timedelta(days=day_number - 1)

    def moment(self, day_number: int, hour: int) -> datetime:
        return datetime.combine(self.date_of(day_number), time(hour), tzinfo=timezone.utc)


@dataclass(frozen=True)
class AppWorld:
    seed: int
    scenario_name: str
    scenario: Scenario
    subscription: SubscriptionSpec
    app: AppSpec
    calendar: Calendar
    matchables: tuple[Matchable, ...]
    guides: tuple[Guide, ...]
    visitors: tuple[Visitor, ...]

    @property
    def key(self) -> tuple[object, ...]:
        return (self.seed, self.subscription.subscription_id, self.app.application_id)

    def matchables_of(self, kind: MatchableKind) -> tuple[Matchable, ...]:
        return tuple(matchable for matchable in self.matchables if matchable.kind is kind)

    def vocabulary_on(self, day: date) -> DayVocabulary:
        return DayVocabulary(
            paths=self._ui_values(MatchableKind.PAGE, day) + UNMATCHED_PATHS,
            selectors=self._ui_values(MatchableKind.FEATURE, day) + UNMATCHED_SELECTORS,
            track_names=self._ui_values(MatchableKind.TRACK_TYPE, day) + UNMATCHED_TRACK_NAMES,
        )

    def _ui_values(self, kind: MatchableKind, day: date) -> tuple[str, ...]:
        return tuple(presence.value for matchable in self.matchables_of(kind)
                     for presence in matchable.ui if presence.shown_on(day))


def _latest(changes: tuple[Change, ...], moment: datetime) -> Change:
    return [change for change in changes if change.effective_at <= moment][-1]


def build_world(seed: int, scenario_name: str, scenario: Scenario, subscription: SubscriptionSpec,
                app: AppSpec, first_export_day: date) -> AppWorld:
    key = (seed, subscription.subscription_id, app.application_id)
    calendar = Calendar(first_export_day)
    id_rng = derived_rng(*key, "ids")
    pages = _pages(id_rng, scenario, app, calendar)
    features = _features(id_rng, scenario, app, calendar, pages)
    matchables = pages + features + _track_types(id_rng, app, calendar)
    return AppWorld(
        seed=seed, scenario_name=scenario_name, scenario=scenario, subscription=subscription, app=app,
        calendar=calendar,
        matchables=matchables,
        guides=_guides(id_rng, app, calendar),
        visitors=build_visitors(derived_rng(*key, "visitors"), app.visitors, scenario.case_twin_ids),
    )


def _created_at(calendar: Calendar, index: int) -> datetime:
    return calendar.moment(1, 9) - timedelta(days=400 - 3 * index)


def _matchable(rng: random.Random, kind: MatchableKind, index: int, name: str, value: str,
               calendar: Calendar) -> Matchable:
    created_at = _created_at(calendar, index)
    return Matchable(
        kind=kind,
        matchable_id=pendo_id(rng, FORCED_FIRST_CHARS.get((kind, index))),
        created_at=created_at,
        names=(NameChange(created_at, name),),
        rules=(RuleVersion(created_at, value),),
        ui=(UiPresence(value),),
        deleted_at=None,
        soft_delete_method=2 if index % 2 == 0 else 1,
        group=GROUPS[index % len(GROUPS)],
    )


def _retagged(matchable: Matchable, new_value: str, lifecycle: Lifecycle, calendar: Calendar) -> Matchable:
    """The UI moved to `new_value` a few days before the tag followed, so both rules match something."""
    shipped = calendar.date_of(lifecycle.rule_change_day - lifecycle.ui_change_lead_days)
    old_value = matchable.rules[0].value
    changed_at = calendar.moment(lifecycle.rule_change_day, lifecycle.rule_change_hour)
    return replace(
        matchable,
        rules=matchable.rules + (RuleVersion(changed_at, new_value),),
        ui=(UiPresence(old_value, until_day=shipped), UiPresence(new_value, first_day=shipped)),
    )


def _case_twin(matchable: Matchable, twin_of: Matchable) -> Matchable:
    """Ids that differ only in case collide as file names on case-insensitive file systems."""
    return replace(matchable, matchable_id=twin_of.matchable_id.swapcase())


def _pages(rng: random.Random, scenario: Scenario, app: AppSpec, calendar: Calendar) -> tuple[Matchable, ...]:
    pages = [_matchable(rng, MatchableKind.PAGE, index, name, path, calendar)
             for index, (name, path) in enumerate(_catalog(PAGE_CATALOG, app.pages))]
    lifecycle = scenario.lifecycle
    if lifecycle.rename_day is not None:
        renamed_at = calendar.moment(lifecycle.rename_day, 4)
        pages[0] = replace(pages[0], names=pages[0].names + (NameChange(renamed_at, RENAMED_PAGE_NAME),))
    if lifecycle.rule_change_day is not None:
        pages[1] = _retagged(pages[1], pages[1].rules[0].value + "/v2", lifecycle, calendar)
    if scenario.case_twin_ids:
        pages[3] = _case_twin(pages[3], pages[2])
    return tuple(pages)


def _features(rng: random.Random, scenario: Scenario, app: AppSpec, calendar: Calendar,
              pages: tuple[Matchable, ...]) -> tuple[Matchable, ...]:
    features = [replace(_matchable(rng, MatchableKind.FEATURE, index, name, selector, calendar),
                        page_id=_feature_page_id(pages, index))
                for index, (name, selector) in enumerate(_catalog(FEATURE_CATALOG, app.features))]
    lifecycle = scenario.lifecycle
    if lifecycle.rule_change_day is not None:
        features[0] = _retagged(features[0], features[0].rules[0].value + ".v2", lifecycle, calendar)
    if lifecycle.retired_feature_day is not None:
        retired = features[1]
        deleted_day = lifecycle.deleted_feature_day
        features[1] = replace(
            retired,
            ui=(UiPresence(retired.rules[0].value,
                           until_day=calendar.date_of(lifecycle.retired_feature_day)),),
            deleted_at=None if deleted_day is None else calendar.moment(deleted_day, 4),
        )
    if scenario.case_twin_ids:
        features[3] = _case_twin(features[3], features[2])
    return tuple(features)


def _track_types(rng: random.Random, app: AppSpec, calendar: Calendar) -> tuple[Matchable, ...]:
    return tuple(
        replace(_matchable(rng, MatchableKind.TRACK_TYPE, index, name, event_name, calendar),
                soft_delete_method=1, group=None)
        for index, (name, event_name) in enumerate(_catalog(TRACK_TYPE_CATALOG, app.track_types)))


def _feature_page_id(pages: tuple[Matchable, ...], feature_index: int) -> str | None:
    """Some features are app-wide (no page), like Pendo's global navigation features."""
    if feature_index % 3 == 2:
        return None
    return pages[feature_index % len(pages)].matchable_id


def _guides(rng: random.Random, app: AppSpec, calendar: Calendar) -> tuple[Guide, ...]:
    guides = []
    for index, (name, step_count) in enumerate(_catalog(GUIDE_CATALOG, app.guides)):
        guide_id = pendo_id(rng, "_" if index == 1 else None)
        steps = tuple(_guide_step(rng, index, step) for step in range(step_count))
        created_at = _created_at(calendar, index) + timedelta(days=30)
        guides.append(Guide(
            guide_id=guide_id, name=name, created_at=created_at,
            last_updated_at=created_at + timedelta(days=12, minutes=7 * index),
            state=("public", "public", "disabled", "draft")[index % 4],
            launch_method=("auto", "badge", None, "api")[index % 4],
            steps=steps,
        ))
    return tuple(guides)


def _guide_step(rng: random.Random, guide_index: int, step: int) -> GuideStep:
    has_poll = guide_index in (0, 2) and step == 0
    return GuideStep(
        step_id=pendo_id(rng),
        step_type="poll" if has_poll else ("lightbox", "tooltip", "banner")[step % 3],
        poll_id=pendo_id(rng) if has_poll else None,
    )


def _catalog(catalog: tuple, count: int) -> tuple:
    if not 2 <= count <= len(catalog):
        raise ValueError(f"between 2 and {len(catalog)} entries supported, got {count}")
    return catalog[:count]
