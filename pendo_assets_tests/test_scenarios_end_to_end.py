"""Every scenario of the generator's library, synced as an operator would, read back and compared with truth.

For each scenario the bucket is generated as it looked on each of the scenario's sync days; after each,
the real manifest sensors tick and every run they request executes. The warehouse must then hold
exactly what the generator's world model says the published exports mean.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets.sync import step_failures
from pendo_assets.generator import SCENARIOS, GeneratedExports, Scenario, generate
from pendo_assets.generator.spec import RECURRING_HOUR
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings
from pendo_assets.warehouse import is_snowflake
from pendo_assets.warehouse.pendo_queries import STALE_MATCHED_FEATURE_EVENTS, VALID_MATCHED_FEATURE_EVENTS
from pendo_assets_tests.e2e import (END_DAY, assert_warehouse_matches_truth, days_of, loaded_days_only,
                                    settings_in, tick_and_run, warehouse_of)
from pendo_assets_tests.snowflake_recording import by_session, record_statements, transaction_problems

FIRST_DAY = date(2022, 1, 1)
LOADABLE = [name for name in SCENARIOS if name != "bench-day"]
# Each loaded day costs about 0.25 s of Dagster bookkeeping here: the whole 3-year export takes 260 s and
# demo 80 s, so they load only their recent days; the sensor skips the older ones, and the comparison
# covers the days loaded.
RECENT_DAYS_ONLY = {"demo": 15, "one-time-3-years": 60}
EVENTS_PER_DAY = {"demo": 60}
# 2-30 s each; `small` is left unmarked so `make test-fast` still syncs one scenario end to end.
SCENARIO_CASES = [pytest.param(name, marks=() if name == "small" else pytest.mark.slow) for name in LOADABLE]
# Snowflake (fakesnow over HTTP) takes several times DuckDB's time per day, so `make test` syncs the scenarios
# that exercise what differs there: a rule change, its retroactive export and Pendo's stale/valid queries
# (small), new columns (ALTER before the transaction), awkward ids, visitor and account upserts, and one day's files
# encoding periodId and timestamps differently (each staged from its own encoding).
# PENDO_SNOWFLAKE_SCENARIOS=all runs every loadable scenario (about 40 minutes; `make test-snowflake-all`).
SNOWFLAKE_SCENARIOS = (LOADABLE if os.environ.get("PENDO_SNOWFLAKE_SCENARIOS") == "all" else
                       ["small", "schema-drift", "identifiers", "visitors-accounts", "mixed-encodings"])
SNOWFLAKE_CASES = [pytest.param(name, marks=pytest.mark.slow) for name in SNOWFLAKE_SCENARIOS]


def first_partition(name: str) -> date:
    return END_DAY - timedelta(days=RECENT_DAYS_ONLY[name]) if name in RECENT_DAYS_ONLY else FIRST_DAY


def sync_dates(scenario: Scenario) -> list[date]:
    first_export_day = END_DAY - timedelta(days=scenario.export_days - 1)
    return [first_export_day + timedelta(days=day - 1) for day in scenario.checkpoints]


def stale_and_valid_feature_rows(settings: Settings, app: AppLocation) -> tuple[set[tuple], set[tuple], int]:
    """Pendo's seed-003 queries, unchanged, as (matchableId, eventId, periodId) keys, and the table's rows."""
    with warehouse_of(settings).session() as session:
        if session.table_columns(app.schema_name, "MATCHEDFEATUREEVENTS") is None:
            return set(), set(), 0
        session.execute(f"USE {'SCHEMA ' if is_snowflake(settings.warehouse) else ''}{session.quote(app.schema_name)}")
        columns = [c.lower() for c in session.table_columns(app.schema_name, "MATCHEDFEATUREEVENTS")]
        key = [columns.index("matchableid"), columns.index("eventid"), columns.index("periodid")]
        stale, valid = ({tuple(row[i] for i in key) for row in session.query(sql)}
                        for sql in (STALE_MATCHED_FEATURE_EVENTS, VALID_MATCHED_FEATURE_EVENTS))
        (rows,), = session.query("SELECT count(*) FROM MatchedFeatureEvents")
    return stale, valid, rows


def deleted_feature_ids(generated: GeneratedExports) -> set[str]:
    return {feature_id for app in generated.apps
            for feature_id, feature in app.truth.definitions["FEATURES"].items() if feature["deletedAt"]}


def assert_only_runs_needing_a_missing_file_fail(results, generated: GeneratedExports) -> None:
    """Such a run fails naming the file and its export; every count check of the other days passes."""
    missing = {(app.application_id, file.day.isoformat()): file for app in generated.apps
               for file in app.missing_files}
    for request, result in results:
        if result.success:
            continue
        app_id = request.tags["pendo/application_id"]
        needed = [missing[(app_id, day)] for day in days_of(request) if (app_id, day) in missing]
        message = " ".join(step_failures(result))
        assert needed, f"the run for {days_of(request)} failed: {message}"
        for file in needed:
            assert file.relative_path in message and f"export {file.counter}" in message, message
    missing_days = {day for _, day in missing}
    checks = [evaluation for _, result in results for evaluation in result.get_asset_check_evaluations()
              if evaluation.partition not in missing_days]
    assert all(evaluation.passed for evaluation in checks)


@pytest.mark.parametrize("name", SCENARIO_CASES)
def test_each_sync_of_the_scenario_leaves_exactly_what_its_exports_mean(name: str, tmp_path: Path) -> None:
    sync_each_step_and_compare(name, settings_in(tmp_path, first_partition(name)))


@pytest.mark.parametrize("name", SNOWFLAKE_CASES)
def test_each_sync_into_snowflake_through_the_staged_path_leaves_what_the_exports_mean(
        name: str, tmp_path: Path, snowflake_server, snowflake_database, monkeypatch) -> None:
    """The server answers a small CLIENT_STAGE_ARRAY_BINDING_THRESHOLD, as a real account's reaches a production
    load's bookkeeping: what the connector sends, its own statements included, keeps the transaction rules, as
    recorded at its cursor class and as the server logged it."""
    snowflake_server.use_in(monkeypatch)
    settings = replace(settings_in(tmp_path, first_partition(name)), warehouse=snowflake_server.url(snowflake_database))
    mark = snowflake_server.mark()
    with record_statements() as recorder:
        sync_each_step_and_compare(name, settings)
    assert transaction_problems(by_session(recorder.statements), recorder.session_parameters) == []
    logins = {session: login.parameters for session, login in snowflake_server.sessions(mark).items()}
    assert transaction_problems(by_session(snowflake_server.statements_since(mark)), logins) == []


def sync_each_step_and_compare(name: str, settings: Settings) -> None:
    scenario = SCENARIOS[name]
    first_day = settings.first_day
    cursors: dict[str, str | None] = {}
    missing_file_reported = False
    with dg.DagsterInstance.ephemeral() as instance:
        for as_of in sync_dates(scenario):
            generated = generate(name, settings.exports, end_day=END_DAY, as_of=as_of,
                                 events_per_day=EVENTS_PER_DAY.get(name))
            results = tick_and_run(settings, instance, cursors)
            assert results, f"the sensors requested nothing as of {as_of}"
            requested_days = {date.fromisoformat(day) for request, _ in results for day in days_of(request)}
            assert min(requested_days, default=first_day) >= first_day
            assert_only_runs_needing_a_missing_file_fail(results, generated)
            missing_file_reported |= any(not result.success for _, result in results)
            assert_warehouse_matches_truth(settings, loaded_days_only(generated, first_day))
            assert_stale_rows_follow_the_rules(settings, scenario, generated, as_of)
        assert tick_and_run(settings, instance, cursors) == [], "an unchanged bucket requested runs"
    assert missing_file_reported == any(app.missing_files for app in generated.apps)


def assert_stale_rows_follow_the_rules(settings: Settings, scenario: Scenario, generated: GeneratedExports,
                                       as_of: date) -> None:
    """Between a rule change and its retroactive export, rows of the re-tagged feature are stale (seed 003);
    once it arrived, only a deleted feature's rows are."""
    lifecycle = scenario.lifecycle
    if lifecycle.rule_change_day is None:
        return
    first_export_day = END_DAY - timedelta(days=scenario.export_days - 1)
    rules_changed_on = first_export_day + timedelta(days=lifecycle.rule_change_day - 1)
    retroactive_on = first_export_day + timedelta(days=lifecycle.retroactive_day - 1)
    deleted = deleted_feature_ids(generated)
    for app in generated.apps:
        stale, valid, rows = stale_and_valid_feature_rows(settings, AppLocation(app.subscription_id,
                                                                                app.application_id))
        stale_features = {feature_id for feature_id, _, _ in stale}
        if rules_changed_on <= as_of < retroactive_on and lifecycle.rule_change_hour < RECURRING_HOUR:
            assert stale_features - deleted, "rows matched under the old rules must read stale"
        elif as_of >= retroactive_on:
            assert stale_features <= deleted
        assert valid or not rows, "most matched feature rows are valid"
        assert not stale & valid
