"""The scenario library: one named scenario per situation a loader must handle (format spec §7.1).

Each is a sequence of manifest versions over time: `generate(..., as_of=day)` writes the bucket as it
looked that day, and `Scenario.sync_days` names the days worth syncing on.
"""

from __future__ import annotations

from pendo_assets.generator.spec import (
    AppSpec, EventEncoding, FileShapes, Lifecycle, ManifestQuirks, MetadataExports, MidnightEdge, OneTimeExport,
    PeriodIdEncoding, PeriodLayout, Scenario, SubscriptionSpec, TimestampUnit, backfill)

ACME_ID = "5123456789012345"
GLOBEX_ID = "6192449487634432"
ACME = "Acme Corp"
GLOBEX = "Globex GmbH"
DEFAULT_APP_ID = "-323232"
ADMIN_APP_ID = "5629499534213120"
BENCH_DAY_EVENTS = 2_000_000


def _crm(events_per_day: tuple[int, int] = (20, 40), **overrides: object) -> AppSpec:
    fields: dict[str, object] = dict(application_id=DEFAULT_APP_ID, display_name="Acme CRM",
                                     hostname="app.acme.example", events_per_day=events_per_day, visitors=25,
                                     pages=4, features=5, track_types=2, guides=2)
    return AppSpec(**{**fields, **overrides})


def _acme(*apps: AppSpec) -> tuple[SubscriptionSpec, ...]:
    return (SubscriptionSpec(ACME_ID, ACME, apps),)


RETAGGED_ON_DAY_6 = Lifecycle(rule_change_day=6, retroactive_delay_days=1)
# Consecutive file parts differ in both periodId and timestamp encoding, so any file split in two mixes both.
MIXED_ENCODINGS = (
    EventEncoding(PeriodIdEncoding.DATE, TimestampUnit.MILLIS),
    EventEncoding(PeriodIdEncoding.ISO_DATE, TimestampUnit.MICROS),
    EventEncoding(PeriodIdEncoding.EPOCH_DAYS, TimestampUnit.MILLIS),
    EventEncoding(PeriodIdEncoding.YYYYMMDD, TimestampUnit.MICROS),
)

SCENARIOS: dict[str, Scenario] = {
    "demo": Scenario(
        description="3 apps in 2 subscriptions, 45 days: backfill, retroactive export, drift, split days",
        subscriptions=(
            SubscriptionSpec(ACME_ID, ACME, (
                _crm((300, 800), visitors=240, pages=6, features=8, track_types=3, guides=3),
                AppSpec(ADMIN_APP_ID, "Acme Admin Console", "admin.acme.example", (300, 600), 120, 5, 7, 3, 2,
                        split_definition_files=("allfeatures",)),
            )),
            SubscriptionSpec(GLOBEX_ID, GLOBEX, (
                AppSpec(DEFAULT_APP_ID, "Globex Portal", "portal.globex.example", (40, 80), 30, 3, 4, 2, 2),
            )),
        ),
        export_days=45,
        one_time_exports=(backfill(10),),
        lifecycle=Lifecycle(rule_change_day=30, rename_day=20, retired_feature_day=8, deleted_feature_day=22),
        metadata_exports=MetadataExports(field_added_day=20, field_deleted_day=30),
        files=FileShapes(max_rows_per_file=750, multi_file_period_day=29),
        schema_drift_day=36,
        sync_days=(20, 45),
    ),
    "small": Scenario(
        description="1 app, 12 days after a 3-day backfill, retroactive on day 8 (for fast tests)",
        subscriptions=_acme(_crm((30, 50), split_definition_files=("allpages",))),
        export_days=12,
        one_time_exports=(backfill(3),),
        lifecycle=Lifecycle(rule_change_day=8, rename_day=5, retired_feature_day=1, deleted_feature_day=11),
        files=FileShapes(codec_weights=(("deflate", 2), ("snappy", 2), ("null", 1)), multi_file_period_day=2),
        schema_drift_day=10,
    ),
    "recurring": Scenario(
        description="daily exports only: yesterday + a finalized day (late events, changed matches)",
        subscriptions=_acme(_crm((80, 120))),
        export_days=14,
        sync_days=(5, 14),
    ),
    "backfill-one-export": Scenario(
        description="a 21-day backfill in one one-time export (day-suffixed files), then 3 days",
        subscriptions=_acme(_crm()),
        export_days=3,
        one_time_exports=(backfill(21),),
        files=FileShapes(layout=PeriodLayout.DAY_SUFFIXES),
    ),
    "backfill-sequential": Scenario(
        description="a 20-day backfill as 4 one-time exports, one a day, beside daily exports",
        subscriptions=_acme(_crm()),
        export_days=4,
        one_time_exports=tuple(OneTimeExport(chunk + 1, -20 + 5 * chunk, -16 + 5 * chunk)
                               for chunk in range(4)),
        sync_days=(1, 2, 3, 4),
    ),
    "retroactive-separate": Scenario(
        description="rule change day 6; separate retroactive export day 7 (deletes, partial defs); "
                    "days it re-tagged unfinalized are finalized after it",
        subscriptions=_acme(_crm((100, 140))),
        export_days=15,
        one_time_exports=(backfill(3),),
        lifecycle=RETAGGED_ON_DAY_6,
        sync_days=(6, 7, 9, 15),
    ),
    "retroactive-folded": Scenario(
        description="rule change day 6; retroactive periods folded into day 7's daily export",
        subscriptions=_acme(_crm()),
        export_days=9,
        one_time_exports=(backfill(3),),
        lifecycle=Lifecycle(rule_change_day=6, retroactive_delay_days=1, retroactive_folded=True),
        sync_days=(6, 7, 9),
    ),
    "multi-file": Scenario(
        description="-NNN files split by rows and by size, an empty file, split definitions",
        subscriptions=_acme(_crm((150, 220), split_definition_files=(
            "allpages", "allfeatures", "alltracktypes", "allguides"))),
        export_days=3,
        one_time_exports=(backfill(2),),
        files=FileShapes(max_rows_per_file=25, max_bytes_per_file=9_000, block_bytes=2_000,
                         multi_file_period_day=1),
    ),
    "manifest-rotation": Scenario(
        description="42 days: exports older than 30 days leave the manifest, even every copy of the "
                    "first days; folders stay",
        subscriptions=_acme(_crm((8, 14))),
        export_days=42,
        sync_days=(18, 42),
    ),
    "counter-gaps": Scenario(
        description="export counters with gaps: 3, 5 and 6 never appear",
        subscriptions=_acme(_crm()),
        export_days=6,
        quirks=ManifestQuirks(skipped_counters=frozenset({3, 5, 6})),
        sync_days=(3, 6),
    ),
    "unlisted-folder": Scenario(
        description="the last export is still uploading: folder present, not in the manifest",
        subscriptions=_acme(_crm()),
        export_days=4,
        quirks=ManifestQuirks(unlisted_last_export=True),
    ),
    "missing-file": Scenario(
        description="the manifest lists a file that never arrived (day 11's finalized allevents)",
        subscriptions=_acme(_crm()),
        export_days=11,
        quirks=ManifestQuirks(missing_file_export_day=11),
        sync_days=(10, 11),
    ),
    "identifiers": Scenario(
        description="ids starting with - or _, ids differing only in case, _PENDO_T_, IPv6, non-ASCII",
        subscriptions=_acme(_crm((40, 60), visitors=40, pages=6, features=6)),
        export_days=3,
        one_time_exports=(backfill(2),),
        case_twin_ids=True,
    ),
    "schema-drift": Scenario(
        description="from day 4: new nullable sessionId in events, isCoreEvent in definitions",
        subscriptions=_acme(_crm()),
        export_days=7,
        schema_drift_day=4,
        sync_days=(3, 7),
    ),
    "visitors-accounts": Scenario(
        description="visitor/account exports: full then daily deltas, a field added, one deleted",
        subscriptions=_acme(_crm(visitors=40)),
        export_days=5,
        metadata_exports=MetadataExports(rows_per_file=15, field_added_day=3, field_deleted_day=4),
        # The full export, then the day a field appears, the day another is deleted, and the last delta.
        sync_days=(1, 3, 4, 5),
    ),
    "definition-lifecycle": Scenario(
        description="rename day 3; rule change day 5 (stale until retroactive day 6); delete day 8",
        subscriptions=_acme(_crm()),
        export_days=9,
        one_time_exports=(backfill(5),),
        lifecycle=Lifecycle(rule_change_day=5, rule_change_hour=3, retroactive_delay_days=1, rename_day=3,
                            retired_feature_day=-1, deleted_feature_day=8),
        sync_days=(2, 3, 5, 6, 9),
    ),
    "multi-tenant": Scenario(
        description="2 subscriptions, 3 apps (-323232 in both) in one bucket",
        subscriptions=(
            SubscriptionSpec(ACME_ID, ACME, (
                _crm(),
                AppSpec(ADMIN_APP_ID, "Acme Admin Console", "admin.acme.example", (20, 30), 15, 3, 4, 2, 2),
            )),
            SubscriptionSpec(GLOBEX_ID, GLOBEX, (
                AppSpec(DEFAULT_APP_ID, "Globex Portal", "portal.globex.example", (10, 20), 10, 3, 3, 2, 2),
            )),
        ),
        export_days=3,
    ),
    "utc-midnight": Scenario(
        description="8 events each side of UTC midnight within 2 s, from 00:00:00.000 to 23:59:59.999",
        subscriptions=_acme(_crm((40, 50))),
        export_days=3,
        midnight=MidnightEdge(events_per_side=8, window_ms=2_000),
    ),
    "mixed-encodings": Scenario(
        description="a day's files mix encodings: periodId as date, ISO text, epoch days or yyyymmdd; "
                    "timestamps in millis or micros",
        subscriptions=_acme(_crm()),
        export_days=3,
        one_time_exports=(backfill(2),),
        files=FileShapes(max_rows_per_file=4, multi_file_period_day=2, encodings=MIXED_ENCODINGS),
    ),
    "test-export": Scenario(
        description='a one-day test export (exportType ["Test"]), daily exports from day 3',
        subscriptions=_acme(_crm()),
        export_days=5,
        one_time_exports=(OneTimeExport(1, 0, 0, test=True),),
        recurring_from=3,
        sync_days=(1, 5),
    ),
    "one-time-3-years": Scenario(
        description="one 3-year one-time export (1,096 days, a few events each), then 2 days",
        subscriptions=_acme(_crm((2, 4), visitors=8)),
        export_days=3,
        one_time_exports=(OneTimeExport(1, -1095, 0),),
        recurring_from=2,
    ),
    "bench-day": Scenario(
        description=f"one day of {BENCH_DAY_EVENTS:,} events in one deflate allevents file "
                    "(see --events-per-day)",
        subscriptions=_acme(_crm((BENCH_DAY_EVENTS, BENCH_DAY_EVENTS), visitors=5000, pages=8, features=8,
                                 track_types=4, guides=4)),
        export_days=1,
        one_time_exports=(OneTimeExport(1, 0, 0),),
        recurring_from=None,
        files=FileShapes(codec_weights=(("deflate", 1),)),
    ),
}
