"""Which exports Pendo runs for an app, when, and which periods each one carries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum

from pendo_assets.generator.events import DayVersion
from pendo_assets.generator.ids import derived_rng
from pendo_assets.generator.spec import (
    ONE_TIME_HOUR, RECURRING_HOUR, RETROACTIVE_HOUR, OneTimeExport, Scenario)
from pendo_assets.generator.world import AppWorld, Matchable


class ExportKind(Enum):
    ONE_TIME = "one-time"
    TEST = "test"
    RECURRING = "recurring"
    RETROACTIVE = "retroactive"

    @property
    def export_type(self) -> list[str] | None:
        """Seed 001: null for one-time and recurring exports."""
        return {ExportKind.RETROACTIVE: ["Retroactive"], ExportKind.TEST: ["Test"]}.get(self)


@dataclass(frozen=True)
class PeriodPlan:
    """A full period carries allevents and every match; a retroactive one only `rematched` objects.

    `loses_file`: the export lists this period's first allevents file but the file never arrives.
    """

    day: date
    version: DayVersion
    rematched: tuple[Matchable, ...] | None = None
    loses_file: bool = False

    @property
    def is_full(self) -> bool:
        return self.rematched is None


@dataclass(frozen=True)
class ExportPlan:
    """`completes` is False for an export still uploading when the scenario ends: it is never listed."""

    counter: int
    kind: ExportKind
    export_day: date
    timestamp: datetime
    finish_time: datetime
    periods: tuple[PeriodPlan, ...]
    changed_definitions: tuple[Matchable, ...] | None = None
    completes: bool = True

    @property
    def has_all_definitions(self) -> bool:
        return self.changed_definitions is None


@dataclass(frozen=True)
class _Delivery:
    day_number: int
    hour: int
    kind: ExportKind
    one_time: OneTimeExport | None = None
    folds_retroactive: bool = False


def plan_exports(world: AppWorld) -> list[ExportPlan]:
    """Every export of the scenario in counter order, with the day versions known at each moment."""
    scenario, calendar = world.scenario, world.calendar
    known_versions: dict[date, DayVersion] = {}
    counters = _counters(scenario.quirks.skipped_counters)
    plans: list[ExportPlan] = []
    for delivery in _deliveries(scenario):
        export_day = calendar.date_of(delivery.day_number)
        counter = next(counters)
        timestamp, finish_time = _export_times(world, counter, export_day, delivery.hour)
        periods, changed_definitions = _periods(world, delivery, export_day, known_versions)
        plans.append(ExportPlan(counter, delivery.kind, export_day, timestamp, finish_time, tuple(periods),
                                changed_definitions))
        known_versions.update((period.day, period.version) for period in periods if period.is_full)
    if scenario.quirks.unlisted_last_export:
        plans[-1] = replace(plans[-1], completes=False)
    return plans


def _deliveries(scenario: Scenario) -> list[_Delivery]:
    deliveries = []
    one_time_hours: dict[int, int] = {}
    for one_time in scenario.one_time_exports:
        hour = one_time_hours.get(one_time.export_day, ONE_TIME_HOUR - 1) + 1
        one_time_hours[one_time.export_day] = hour
        kind = ExportKind.TEST if one_time.test else ExportKind.ONE_TIME
        deliveries.append(_Delivery(one_time.export_day, hour, kind, one_time=one_time))
    lifecycle = scenario.lifecycle
    if scenario.recurring_from is not None:
        for day_number in range(scenario.recurring_from, scenario.export_days + 1):
            folds = lifecycle.retroactive_folded and day_number == lifecycle.retroactive_day
            deliveries.append(_Delivery(day_number, RECURRING_HOUR, ExportKind.RECURRING,
                                        folds_retroactive=folds))
    if lifecycle.retroactive_day is not None and not lifecycle.retroactive_folded:
        deliveries.append(_Delivery(lifecycle.retroactive_day, RETROACTIVE_HOUR, ExportKind.RETROACTIVE))
    return sorted(deliveries, key=lambda delivery: (delivery.day_number, delivery.hour))


def _periods(world: AppWorld, delivery: _Delivery, export_day: date, known_versions: dict[date, DayVersion]
             ) -> tuple[list[PeriodPlan], tuple[Matchable, ...] | None]:
    calendar = world.calendar
    if delivery.one_time is not None:
        days = range(delivery.one_time.first_period, delivery.one_time.last_period + 1)
        return [PeriodPlan(calendar.date_of(day), DayVersion.FINALIZED) for day in days], None
    if delivery.kind is ExportKind.RETROACTIVE:
        retagged = _retagged_matchables(world)
        return _rematched_periods(known_versions, retagged), retagged
    periods = _recurring_periods(world, delivery.day_number, export_day, known_versions)
    if delivery.folds_retroactive:
        after_this_export = {**known_versions, **{period.day: period.version for period in periods}}
        periods += _rematched_periods(after_this_export, _retagged_matchables(world))
    return periods, None


def _recurring_periods(world: AppWorld, day_number: int, export_day: date,
                       known_versions: dict[date, DayVersion]) -> list[PeriodPlan]:
    periods = [PeriodPlan(export_day - timedelta(days=1), DayVersion.UNFINALIZED)]
    finalized_day = export_day - timedelta(days=world.scenario.finalization_lag_days)
    if finalized_day in known_versions:
        loses_file = day_number == world.scenario.quirks.missing_file_export_day
        periods.append(PeriodPlan(finalized_day, DayVersion.FINALIZED, loses_file=loses_file))
    elif day_number == world.scenario.quirks.missing_file_export_day:
        raise ValueError(f"the recurring export of day {day_number} re-exports no finalized day, "
                         "so it has no file to lose")
    return periods


def _rematched_periods(known_versions: dict[date, DayVersion], rematched: tuple[Matchable, ...]
                       ) -> list[PeriodPlan]:
    """Retroactive processing re-tags the lifetime of the data: every day exported so far."""
    return [PeriodPlan(day, known_versions[day], rematched) for day in sorted(known_versions)]


def _retagged_matchables(world: AppWorld) -> tuple[Matchable, ...]:
    return tuple(matchable for matchable in world.matchables if len(matchable.rules) > 1)


def _counters(skipped: frozenset[int]) -> Iterator[int]:
    counter = 0
    while True:
        counter += 1
        if counter not in skipped:
            yield counter


def _export_times(world: AppWorld, counter: int, export_day: date, hour: int) -> tuple[datetime, datetime]:
    """Start within the export's hour and finish before the next hour's export starts."""
    rng = derived_rng(*world.key, "export-times", counter)
    start = datetime.combine(export_day, time(hour), tzinfo=timezone.utc)
    timestamp = start + timedelta(minutes=rng.randrange(30), seconds=rng.randrange(60))
    duration = timedelta(minutes=rng.randrange(2, 25), seconds=rng.randrange(60),
                         microseconds=rng.randrange(10**6))
    return timestamp, timestamp + duration


def published_by(plans: list[ExportPlan], as_of: date) -> list[ExportPlan]:
    return [plan for plan in plans if plan.export_day <= as_of and plan.completes]


def uploading_on(plans: list[ExportPlan], as_of: date) -> list[ExportPlan]:
    return [plan for plan in plans if plan.export_day <= as_of and not plan.completes]
