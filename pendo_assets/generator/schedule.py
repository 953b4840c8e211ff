"""Which exports Pendo runs for an app, when, and which periods each one carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum

from pendo_assets.generator.events import DayVersion
from pendo_assets.generator.ids import derived_rng
from pendo_assets.generator.world import AppWorld, Matchable

RECURRING_HOUR = 6
ONE_TIME_HOUR = 2
RETROACTIVE_HOUR = 13


class ExportKind(Enum):
    ONE_TIME = "one-time"
    RECURRING = "recurring"
    RETROACTIVE = "retroactive"

    @property
    def export_type(self) -> list[str] | None:
        return ["Retroactive"] if self is ExportKind.RETROACTIVE else None


@dataclass(frozen=True)
class PeriodPlan:
    """A full period carries allevents and every match; a retroactive one only `rematched` objects."""

    day: date
    version: DayVersion
    rematched: tuple[Matchable, ...] | None = None

    @property
    def is_full(self) -> bool:
        return self.rematched is None


@dataclass(frozen=True)
class ExportPlan:
    counter: int
    kind: ExportKind
    export_day: date
    timestamp: datetime
    finish_time: datetime
    periods: tuple[PeriodPlan, ...]
    changed_definitions: tuple[Matchable, ...] | None = None

    @property
    def has_all_definitions(self) -> bool:
        return self.changed_definitions is None


def plan_exports(world: AppWorld) -> list[ExportPlan]:
    """Every export of the scenario in counter order, with the day versions known at each moment."""
    scenario, calendar = world.scenario, world.calendar
    known_versions: dict[date, DayVersion] = {}
    plans: list[ExportPlan] = []

    def add(kind: ExportKind, export_day: date, hour: int, periods: list[PeriodPlan],
            changed_definitions: tuple[Matchable, ...] | None = None) -> None:
        timestamp, finish_time = _export_times(world, len(plans) + 1, export_day, hour)
        plans.append(ExportPlan(len(plans) + 1, kind, export_day, timestamp, finish_time, tuple(periods),
                                changed_definitions))
        known_versions.update((period.day, period.version) for period in periods if period.is_full)

    if scenario.backfill_days:
        first = calendar.date_of(1)
        backfill = [first - timedelta(days=offset) for offset in range(scenario.backfill_days + 1, 1, -1)]
        add(ExportKind.ONE_TIME, first, ONE_TIME_HOUR,
            [PeriodPlan(day, DayVersion.FINALIZED) for day in backfill])
    for day_number in range(1, scenario.export_days + 1):
        export_day = calendar.date_of(day_number)
        add(ExportKind.RECURRING, export_day, RECURRING_HOUR,
            _recurring_periods(world, export_day, known_versions))
        if day_number == scenario.lifecycle.rule_change_day:
            retagged = _retagged_matchables(world)
            periods = [PeriodPlan(day, known_versions[day], retagged) for day in sorted(known_versions)]
            add(ExportKind.RETROACTIVE, export_day, RETROACTIVE_HOUR, periods, retagged)
    return plans


def _recurring_periods(world: AppWorld, export_day: date,
                       known_versions: dict[date, DayVersion]) -> list[PeriodPlan]:
    periods = [PeriodPlan(export_day - timedelta(days=1), DayVersion.UNFINALIZED)]
    finalized_day = export_day - timedelta(days=world.scenario.finalization_lag_days)
    if finalized_day in known_versions:
        periods.append(PeriodPlan(finalized_day, DayVersion.FINALIZED))
    return periods


def _retagged_matchables(world: AppWorld) -> tuple[Matchable, ...]:
    return tuple(matchable for matchable in world.matchables if len(matchable.rules) > 1)


def _export_times(world: AppWorld, counter: int, export_day: date, hour: int) -> tuple[datetime, datetime]:
    rng = derived_rng(*world.key, "export-times", counter)
    start = datetime.combine(export_day, time(hour), tzinfo=timezone.utc)
    timestamp = start + timedelta(minutes=rng.randrange(40), seconds=rng.randrange(60))
    return timestamp, timestamp + timedelta(minutes=rng.randrange(2, 25), seconds=rng.randrange(60))


def published_by(plans: list[ExportPlan], as_of: date) -> list[ExportPlan]:
    return [plan for plan in plans if plan.export_day <= as_of]
