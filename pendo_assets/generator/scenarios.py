"""Named scenarios: which subscriptions and apps exist, and when the world changes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppSpec:
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
        if self.events_per_day[0] < 5:
            raise ValueError("days need at least 5 events: two next to each midnight and some between")


@dataclass(frozen=True)
class SubscriptionSpec:
    subscription_id: str
    display_name: str
    apps: tuple[AppSpec, ...]


@dataclass(frozen=True)
class Lifecycle:
    """When the world changes, as day numbers (day 1 is the day of the first recurring export).

    The rule change re-tags the first feature and the second page (with a retroactive export that same
    day); the new selector and path shipped in the UI `ui_change_lead_days` earlier. The second feature
    disappears from the UI on `retired_feature_day` and is soft-deleted on `deleted_feature_day`. The
    first page is renamed on `rename_day`.
    """

    rule_change_day: int
    ui_change_lead_days: int
    rename_day: int
    retired_feature_day: int
    deleted_feature_day: int


@dataclass(frozen=True)
class Scenario:
    """Day fields are day numbers as in `Lifecycle`. `multi_file_period_day` is the period whose allevents
    is split into three files, one of them empty; other allevents files split at `max_rows_per_file`.
    From `schema_drift_day` on, exports write event files with an extra `sessionId` field."""

    description: str
    subscriptions: tuple[SubscriptionSpec, ...]
    export_days: int
    backfill_days: int
    lifecycle: Lifecycle
    multi_file_period_day: int
    schema_drift_day: int
    codec_weights: tuple[tuple[str, int], ...]
    finalization_lag_days: int = 9
    late_event_ratio: float = 0.03
    late_match_ratio: float = 0.04
    max_rows_per_file: int | None = None

    def __post_init__(self) -> None:
        lifecycle = self.lifecycle
        # A day still carrying the deleted feature must be finalized before the deletion, otherwise
        # Pendo's exports (which skip deleted matchables) and the ground truth would disagree.
        if lifecycle.deleted_feature_day <= lifecycle.retired_feature_day + self.finalization_lag_days:
            raise ValueError("deleted_feature_day must come after the retired days are finalized")
        if not 1 <= lifecycle.rule_change_day <= self.export_days:
            raise ValueError("rule_change_day must be an export day")


ACME = "Acme Corp"

SCENARIOS: dict[str, Scenario] = {
    "demo": Scenario(
        description="2 subscriptions, 3 apps, 45 daily exports + backfill, retroactive export, drift",
        subscriptions=(
            SubscriptionSpec(
                subscription_id="5123456789012345",
                display_name=ACME,
                apps=(
                    AppSpec("-323232", "Acme CRM", "app.acme.example", (300, 800), 240, 6, 8, 3, 3),
                    AppSpec(
                        "5629499534213120", "Acme Admin Console", "admin.acme.example", (300, 600), 120,
                        5, 7, 3, 2, split_definition_files=("allfeatures",),
                    ),
                ),
            ),
            SubscriptionSpec(
                subscription_id="6192449487634432",
                display_name="Globex GmbH",
                apps=(
                    AppSpec("-323232", "Globex Portal", "portal.globex.example", (40, 80), 30, 3, 4, 2, 2),
                ),
            ),
        ),
        export_days=45,
        backfill_days=10,
        lifecycle=Lifecycle(
            rule_change_day=30, ui_change_lead_days=3, rename_day=20, retired_feature_day=8,
            deleted_feature_day=22,
        ),
        multi_file_period_day=29,
        schema_drift_day=36,
        codec_weights=(("deflate", 7), ("snappy", 2), ("null", 1)),
        max_rows_per_file=750,
    ),
    "small": Scenario(
        description="1 app, 12 daily exports + 3-day backfill, retroactive export on day 8; for fast tests",
        subscriptions=(
            SubscriptionSpec(
                subscription_id="5123456789012345",
                display_name=ACME,
                apps=(
                    AppSpec(
                        "-323232", "Acme CRM", "app.acme.example", (30, 50), 25, 4, 5, 2, 2,
                        split_definition_files=("allpages",),
                    ),
                ),
            ),
        ),
        export_days=12,
        backfill_days=3,
        lifecycle=Lifecycle(
            rule_change_day=8, ui_change_lead_days=3, rename_day=5, retired_feature_day=1,
            deleted_feature_day=11,
        ),
        multi_file_period_day=2,
        schema_drift_day=10,
        codec_weights=(("deflate", 2), ("snappy", 2), ("null", 1)),
    ),
}
