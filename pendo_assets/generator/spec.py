"""What a scenario is made of: who exports, which exports Pendo runs and when, and how the world changes.

Days are day numbers: day 1 is the first export day and the scenario's last export runs on day
`export_days`; day 0 is the day before day 1, and so on backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

# Seed 001: "File sizes are capped at approximately 3 GB"; a bigger file is split.
PENDO_MAX_FILE_BYTES = 3_000_000_000
# Java Avro's default sync interval, so blocks look like the ones Pendo's writer produces.
DEFAULT_BLOCK_BYTES = 64_000
MANIFEST_WINDOW_DAYS = 30
# Hours (UTC) at which each kind of export starts; their order decides counters within a day.
ONE_TIME_HOUR = 2
METADATA_HOUR = 5
RECURRING_HOUR = 6
RETROACTIVE_HOUR = 13


@dataclass(frozen=True)
class AppSpec:
    """`events_per_day` bounds the rows of a finalized day; each day draws its own count."""

    application_id: str
    display_name: str
    hostname: str
    events_per_day: tuple[int, int]
    visitors: int
    pages: int
    features: int
    track_types: int
    guides: int
    split_definition_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        low, high = self.events_per_day
        if not 2 <= low <= high:
            raise ValueError("events_per_day needs 2 <= low <= high: one on-time and one late event at least")


@dataclass(frozen=True)
class SubscriptionSpec:
    subscription_id: str
    display_name: str
    apps: tuple[AppSpec, ...]


@dataclass(frozen=True)
class Lifecycle:
    """How pages and features change; None means it never happens in the scenario.

    A rule change re-tags the first feature and the second page at `rule_change_hour` of
    `rule_change_day`; the UI shipped the new selector and path `ui_change_lead_days` earlier, so both
    the old and the new rule match something. Pendo's retroactive export follows
    `retroactive_delay_days` later, either as its own export or folded into that day's recurring one.
    The first page is renamed on `rename_day` (no retroactive export). The second feature leaves the
    UI on `retired_feature_day` and is soft-deleted on `deleted_feature_day`.
    """

    rule_change_day: int | None = None
    rule_change_hour: int = 12
    retroactive_delay_days: int = 0
    retroactive_folded: bool = False
    ui_change_lead_days: int = 3
    rename_day: int | None = None
    retired_feature_day: int | None = None
    deleted_feature_day: int | None = None

    @property
    def retroactive_day(self) -> int | None:
        if self.rule_change_day is None:
            return None
        return self.rule_change_day + self.retroactive_delay_days


@dataclass(frozen=True)
class OneTimeExport:
    """A one-time export delivered on `export_day` covering the periods `first_period..last_period`;
    `test` makes it a trial test export (exportType ["Test"], one day only)."""

    export_day: int
    first_period: int
    last_period: int
    test: bool = False

    def __post_init__(self) -> None:
        if not self.first_period <= self.last_period < self.export_day:
            raise ValueError("a one-time export covers past days, first_period <= last_period < export_day")
        if self.test and self.first_period != self.last_period:
            raise ValueError("a test export covers one day")
        if self.last_period - self.first_period >= 3 * 366:
            raise ValueError("a one-time export covers at most 3 calendar years")


def backfill(days: int, export_day: int = 1) -> OneTimeExport:
    """The usual onboarding export: the `days` days before the day the first recurring export carries."""
    return OneTimeExport(export_day, export_day - 1 - days, export_day - 2)


class PeriodLayout(Enum):
    """Where a multi-period export puts each period's files (undocumented, so both shapes are offered)."""

    DAY_FOLDERS = "day-folders"
    DAY_SUFFIXES = "day-suffixes"


class PeriodIdEncoding(Enum):
    """How an event file writes `periodId`: each encoding a loader must accept (format spec §3.0, §7 question 11)."""

    DATE = "date"  # int with logicalType date
    ISO_DATE = "iso-date"  # string, "2024-04-14"
    EPOCH_DAYS = "epoch-days"  # plain int, days since 1970-01-01
    YYYYMMDD = "yyyymmdd"  # plain long, 20240414


class TimestampUnit(Enum):
    """The logical type of an event file's instants (`browserTimestamp`, and `lastUpdatedAt` when matched)."""

    MILLIS = "timestamp-millis"
    MICROS = "timestamp-micros"


@dataclass(frozen=True)
class EventEncoding:
    """How one event file encodes its day and instants; the values mean the same day and instant in any."""

    period_id: PeriodIdEncoding = PeriodIdEncoding.DATE
    timestamps: TimestampUnit = TimestampUnit.MILLIS


@dataclass(frozen=True)
class FileShapes:
    """How event files are cut and encoded. A file part ends at `max_rows_per_file` rows or once
    `max_bytes_per_file` bytes are on disk (checked per Avro block of `block_bytes`). On
    `multi_file_period_day` the allevents file gets an extra empty part in the middle. Event file parts
    cycle through `encodings`: a day's allevents parts from the first, the matched parts of the period's
    k-th matchable (in order of first match) from the k-th, so one table's files of a day mix them."""

    codec_weights: tuple[tuple[str, int], ...] = (("deflate", 7), ("snappy", 2), ("null", 1))
    max_rows_per_file: int | None = None
    max_bytes_per_file: int = PENDO_MAX_FILE_BYTES
    block_bytes: int = DEFAULT_BLOCK_BYTES
    multi_file_period_day: int | None = None
    layout: PeriodLayout = PeriodLayout.DAY_FOLDERS
    encodings: tuple[EventEncoding, ...] = (EventEncoding(),)

    def __post_init__(self) -> None:
        if not self.encodings:
            raise ValueError("event files need at least one encoding")


@dataclass(frozen=True)
class MidnightEdge:
    """The first and last `events_per_side` on-time events of a day fall within `window_ms` of midnight;
    the very first is at 00:00:00.000 and the very last at 23:59:59.999."""

    events_per_side: int = 2
    window_ms: int = 180_000


@dataclass(frozen=True)
class ManifestQuirks:
    """Manifest behaviour a loader must survive.

    `skipped_counters` never appear (exports that failed or were cancelled). With
    `unlisted_last_export`, the last export is still uploading on the last day: its folder holds
    files but it has no bill of materials and no manifest entry. With `missing_file_export_day`, the
    recurring export of that day lists the first allevents file of its finalized period, but that
    file never arrives; a correct loader refuses that period and keeps what the day had.
    """

    skipped_counters: frozenset[int] = frozenset()
    unlisted_last_export: bool = False
    missing_file_export_day: int | None = None


@dataclass(frozen=True)
class MetadataExports:
    """Subscription-level visitor and account exports: a full export on day 1, then each day the
    records changed the day before. A metadata field appears on `field_added_day`; another is
    marked deleted on `field_deleted_day`."""

    rows_per_file: int = 40
    field_added_day: int = 3
    field_deleted_day: int = 4
    daily_change_share: float = 0.2


@dataclass(frozen=True)
class Scenario:
    """One named simulation: exports over `export_days` days, as a sequence of manifest versions.

    `recurring_from` is the first day with a daily recurring export (None: no recurring export).
    From `schema_drift_day` on, exports write event files with an extra nullable `sessionId` field
    and definition files with an extra `isCoreEvent`. A finalized day differs from its unfinalized
    copy: `late_event_ratio` more events, `late_match_ratio` of load/click events newly matched and
    `withdrawn_match_ratio` no longer matched. `sync_days` are the days on which a loader should
    sync to see every export (no two are 30 days apart) and each interesting manifest version.
    """

    description: str
    subscriptions: tuple[SubscriptionSpec, ...]
    export_days: int
    one_time_exports: tuple[OneTimeExport, ...] = ()
    recurring_from: int | None = 1
    lifecycle: Lifecycle = Lifecycle()
    files: FileShapes = FileShapes()
    schema_drift_day: int | None = None
    finalization_lag_days: int = 9
    late_event_ratio: float = 0.03
    late_match_ratio: float = 0.04
    withdrawn_match_ratio: float = 0.02
    midnight: MidnightEdge = MidnightEdge()
    case_twin_ids: bool = False
    quirks: ManifestQuirks = ManifestQuirks()
    metadata_exports: MetadataExports | None = None
    sync_days: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        lifecycle, last = self.lifecycle, self.export_days
        first_export = min([export.export_day for export in self.one_time_exports]
                           + [self.recurring_from or last + 1])
        if first_export != 1:
            raise ValueError("an export must run on day 1, the first day of the scenario")
        if lifecycle.rule_change_day is not None:
            self._check_retroactive_export()
        deleted, retired = lifecycle.deleted_feature_day, lifecycle.retired_feature_day
        if deleted is not None and (retired is None or deleted < retired + self.finalization_lag_days):
            # Whether Pendo's finalized re-export keeps a deleted object's matches is unknown, so every
            # day that matched it is finalized before the deletion.
            raise ValueError("deleted_feature_day must come after the retired feature's days are finalized")
        if self.one_time_exports and max(e.export_day for e in self.one_time_exports) > last:
            raise ValueError("one-time exports must run on export days")
        if self.quirks.missing_file_export_day is not None and not self._is_recurring_day(
                self.quirks.missing_file_export_day):
            raise ValueError("the missing file belongs to a recurring export")
        if self.case_twin_ids and any(app.pages < 4 or app.features < 4 for app in self._apps()):
            raise ValueError("case twins need at least 4 pages and 4 features per app")
        days = self.checkpoints
        if list(days) != sorted(set(days)) or days[0] < 1 or days[-1] != last:
            raise ValueError("sync_days must increase and end on the last export day")
        if any(later - earlier >= MANIFEST_WINDOW_DAYS for earlier, later in zip((1, *days), days)):
            raise ValueError("a loader syncing on sync_days would miss exports that rotated out")

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """`sync_days`, or just the last day when the scenario names none."""
        return self.sync_days or (self.export_days,)

    def _check_retroactive_export(self) -> None:
        lifecycle = self.lifecycle
        if not 1 <= lifecycle.retroactive_day <= self.export_days:
            raise ValueError("the retroactive export must run on an export day")
        if lifecycle.retroactive_folded:
            if not self._is_recurring_day(lifecycle.retroactive_day) or (
                    lifecycle.retroactive_delay_days == 0 and lifecycle.rule_change_hour >= RECURRING_HOUR):
                raise ValueError("a folded retroactive export needs a recurring export after the rule change")
        elif lifecycle.retroactive_delay_days == 0 and lifecycle.rule_change_hour >= RETROACTIVE_HOUR:
            raise ValueError("a same-day retroactive export must start after the rule change")

    def _apps(self) -> list[AppSpec]:
        return [app for subscription in self.subscriptions for app in subscription.apps]

    def _is_recurring_day(self, day: int) -> bool:
        return self.recurring_from is not None and self.recurring_from <= day <= self.export_days

    def with_events_per_day(self, events: int) -> Scenario:
        """The same scenario with exactly `events` rows in every finalized day of every app."""
        return replace(self, subscriptions=tuple(
            replace(subscription, apps=tuple(replace(app, events_per_day=(events, events))
                                             for app in subscription.apps))
            for subscription in self.subscriptions))
