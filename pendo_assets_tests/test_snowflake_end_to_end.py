"""Snowflake end to end, on the fakesnow server the test setup runs: bad input loses nothing, a sync killed
mid-load leaves every day wholly old or new, and a second warehouse behind the same Dagster instance is filled.

fakesnow holds each database for the server's life and cannot clone one, so each test loads its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets.crash_points import CRASH_AT_VARIABLE
from pendo_assets.generator import GeneratedExports, generate
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings
from pendo_assets.warehouse.bookkeeping import LEDGER
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA
from pendo_assets.warehouse.snowflake import TRANSACTION_PREFIX, OpenTransaction
from pendo_assets_tests.e2e import (END_DAY, STEPS, assert_warehouse_matches_truth, days_of, export_file,
                                    failure_messages, generate_small, loaded_then_reexported, rewrite_avro,
                                    rows_of_day, same_rows, settings_in, snapshot, tick_and_run, warehouse_of)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SYNC = str(Path(sys.executable).parent / "pendo-datasync")


@pytest.fixture
def snowflake_settings(tmp_path: Path, snowflake_server, snowflake_database, monkeypatch) -> Settings:
    snowflake_server.use_in(monkeypatch)
    return replace(settings_in(tmp_path), warehouse=snowflake_server.url(snowflake_database))


def test_bad_input_fails_its_day_and_keeps_its_rows_in_snowflake(snowflake_settings: Settings, tmp_path: Path):
    settings = snowflake_settings
    with dg.DagsterInstance.ephemeral() as instance:
        app, manifest_path, entry, period = loaded_then_reexported(settings, instance)
        day = period["periodId"][:10]
        victim = export_file(manifest_path, entry, period["allEvents"]["files"][0])
        good_file, good_manifest = victim.read_bytes(), manifest_path.read_text()
        rows_before = rows_of_day(snapshot(settings, app), day)
        assert any(rows_before.values())

        def repeat_first_event_id(records: list[dict]) -> list[dict]:
            records[-1]["eventId"] = records[0]["eventId"]
            return records

        # Damage to the files only: the first tick catalogs the re-export's bill of materials as it reads then,
        # so a manifest edited afterwards would not be read again (test_failures covers those, each afresh).
        # One refused before anything is deleted, one failing mid-stream, one the warehouse's own check catches.
        damages = [
            ("missing", lambda: victim.unlink(), [victim.name, "missing"]),
            ("truncated", lambda: victim.write_bytes(good_file[: len(good_file) // 2]), [victim.name]),
            ("an eventId twice", lambda: rewrite_avro(victim, repeat_first_event_id),
             ["the same eventId appears more than once"]),
        ]
        for damage, apply, phrases in damages:
            apply()
            results = tick_and_run(settings, instance, {})
            failed = [days_of(request) for request, result in results if not result.success]
            assert failed and all(day in days for days in failed), (damage, failed)
            message = " ".join(failure_messages(results))
            for phrase in (app.application_id, day, f"export {entry['counter']}", *phrases):
                assert phrase in message, (damage, phrase, message)
            assert same_rows(rows_of_day(snapshot(settings, app), day), rows_before), damage
            victim.write_bytes(good_file)
            manifest_path.write_text(good_manifest)

        results = tick_and_run(settings, instance, {})
        assert results and all(result.success for _, result in results), failure_messages(results)
        assert_warehouse_matches_truth(settings, generate_small(settings.exports, as_of=STEPS[1]))


def sync(settings: Settings, home: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PENDO_EXPORTS": settings.exports, "PENDO_WAREHOUSE": settings.warehouse,
           "PENDO_FIRST_DAY": settings.first_day.isoformat(), "DAGSTER_HOME": str(home), **extra}
    return subprocess.run([SYNC, "sync"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def event_days(settings: Settings, app: AppLocation) -> dict[date, dict[str, list]]:
    """Every event table's rows per day, as sorted (eventId, matchableId-or-None) keys."""
    days: dict[date, dict[str, list]] = {}
    for table, rows in snapshot(settings, app).items():
        for row in rows:
            if "periodid" in row:
                days.setdefault(row["periodid"], {}).setdefault(table, []).append(
                    (row["eventid"], row.get("matchableid")))
    return {day: {table: sorted(keys) for table, keys in by_table.items()} for day, by_table in days.items()}


def truth_days(generated: GeneratedExports) -> dict[date, dict[str, list]]:
    """What a sync that is never interrupted leaves, from the generator's truth, keyed as `event_days` keys."""
    truth = generated.apps[0].truth
    days: dict[date, dict[str, list]] = {}
    for day, event_ids in truth.allevents.items():
        if event_ids:
            days.setdefault(day, {})["ALLEVENTS"] = sorted((event_id, None) for event_id in event_ids)
    for table, by_day in truth.matched.items():
        for day, pairs in by_day.items():
            if pairs:
                days.setdefault(day, {})[table] = sorted((event_id, matchable_id) for matchable_id, event_id in pairs)
    return days


def test_a_sync_killed_mid_load_leaves_each_day_wholly_old_or_new_in_snowflake(
        tmp_path: Path, snowflake_server, snowflake_database, monkeypatch):
    snowflake_server.use_in(monkeypatch)
    settings = replace(settings_in(tmp_path), warehouse=snowflake_server.url(snowflake_database))
    generated = generate_small(settings.exports, as_of=STEPS[0])
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    first = sync(settings, tmp_path / "home")
    assert first.returncode == 0, first.stdout + first.stderr
    old = event_days(settings, app)
    new = truth_days(generate_small(settings.exports, as_of=STEPS[1]))
    assert sum(old.get(day) != new.get(day) for day in set(old) | set(new)) >= 5

    # The tenth COPY of the sync (the definitions take four): days before it committed, the one in flight had
    # deleted its rows.
    killed = sync(settings, tmp_path / "home", **{CRASH_AT_VARIABLE: "file-inserted@10"})

    assert killed.returncode == -9, killed.stdout + killed.stderr
    after = event_days(settings, app)
    changed = [day for day in set(old) | set(new) if after.get(day) != old.get(day)]
    for day in set(old) | set(new) | set(after):
        assert after.get(day) in (old.get(day), new.get(day)), f"{day} mixes old and new rows"
    assert changed, "the kill came after some days were replaced"
    # The killed session's transaction stays open, as on Snowflake, holding its day's DELETE. The next sync finds
    # it by its run's name, aborts it, and finishes the work.
    assert any(t.name.startswith(TRANSACTION_PREFIX) for t in open_transactions(settings))
    resumed = sync(settings, tmp_path / "home")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "recovered: aborted Snowflake transaction" in resumed.stdout, resumed.stdout
    assert not open_transactions(settings)
    assert event_days(settings, app) == new


def open_transactions(settings: Settings) -> list[OpenTransaction]:
    with warehouse_of(settings).session() as session:
        return session.open_transactions()


def test_two_apps_syncing_into_one_database_at_once_both_finish(
        tmp_path: Path, snowflake_server, snowflake_database, monkeypatch):
    """Each app's loads write the bookkeeping tables every app shares; neither waits for the other's."""
    snowflake_server.use_in(monkeypatch)
    settings = replace(settings_in(tmp_path), warehouse=snowflake_server.url(snowflake_database))
    generated = generate("multi-tenant", settings.exports, end_day=END_DAY)
    # One app of each subscription, so that only the shared bookkeeping tables are written by both.
    apps = list({app.subscription_id: f"{app.subscription_id}/{app.application_id}" for app in generated.apps
                 }.values())
    assert len(apps) == 2
    syncs = [subprocess.Popen([SYNC, "sync"], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "PENDO_EXPORTS": settings.exports, "PENDO_APPS": app,
                                   "PENDO_WAREHOUSE": settings.warehouse, "DAGSTER_HOME": str(tmp_path / app),
                                   "PENDO_FIRST_DAY": settings.first_day.isoformat()}) for app in apps]
    outputs = [process.communicate(timeout=600)[0] for process in syncs]
    assert [process.returncode for process in syncs] == [0, 0], outputs
    both = replace(generated, apps=[a for a in generated.apps if f"{a.subscription_id}/{a.application_id}" in apps])
    assert_warehouse_matches_truth(settings, both)


def test_the_same_dagster_instance_fills_a_snowflake_warehouse_after_a_duckdb_one(
        tmp_path: Path, snowflake_server, snowflake_database, monkeypatch):
    snowflake_server.use_in(monkeypatch)
    duckdb_settings = settings_in(tmp_path)
    generated = generate_small(duckdb_settings.exports)
    first = sync(duckdb_settings, tmp_path / "home")
    assert first.returncode == 0, first.stdout + first.stderr

    snowflake = replace(duckdb_settings, warehouse=snowflake_server.url(snowflake_database))
    switched = sync(snowflake, tmp_path / "home")

    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert_warehouse_matches_truth(snowflake, generated)
    with warehouse_of(snowflake).session() as session:
        ledger = session.query(f"SELECT table_name, period_day, built_from FROM "
                               f"{session.quote(BOOKKEEPING_SCHEMA)}.{session.quote(LEDGER)}")
    assert ledger and all(json.loads(built_from) for _, _, built_from in ledger)
    again = sync(snowflake, tmp_path / "home")
    assert ", 0 run(s) to do" in again.stdout, again.stdout
