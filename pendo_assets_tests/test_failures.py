"""Bad input never loses data: the run fails naming app, export, day and file; the day keeps its rows."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets.cli import step_failures
from pendo_assets.generator import generate
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.sql import qualified
from pendo_assets_tests.test_end_to_end import END_DAY, STEPS, days_of, tick_and_run


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, exports=str(tmp_path / "exports"), warehouse=str(tmp_path / "pendo.duckdb"),
                             first_day=date(2024, 1, 1))


def snapshot(settings: Settings, app: AppLocation) -> dict[str, list[dict]]:
    tables = {}
    with DuckDBWarehouse(settings.warehouse).session() as session:
        for (table,) in session.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                      [app.schema_name]):
            columns = list(session.table_columns(app.schema_name, table))
            rows = session.query(f"SELECT * FROM {qualified(app.schema_name, table)}")
            tables[table] = sorted((dict(zip(columns, r)) for r in rows), key=repr)
    return tables


def rows_of_day(tables: dict[str, list[dict]], day: str) -> dict[str, list[dict]]:
    value = date.fromisoformat(day)
    return {table: [r for r in rows if r.get("periodId") == value] for table, rows in tables.items()}


def same_rows(after: dict[str, list[dict]], before: dict[str, list[dict]]) -> bool:
    """Equal on the columns that existed before: other days' loads may have added columns since."""
    def project(rows, columns):
        return sorted((tuple(r.get(c) for c in columns) for r in rows), key=repr)
    return all(project(after.get(t, []), sorted(rows[0]) if rows else []) == project(rows, sorted(rows[0]) if rows else [])
               for t, rows in before.items())


def loaded_state(manifest_path: Path) -> tuple[set[int], set[str]]:
    """Counters and days with allEvents in the manifest as it is now."""
    exports = json.loads(manifest_path.read_text())["exports"]
    return ({e["counter"] for e in exports},
            {p["periodId"] for e in exports for p in e.get("timeDependent", []) if "allEvents" in p})


def new_reexport_of_a_loaded_day(manifest_path: Path, before: tuple[set[int], set[str]]) -> tuple[dict, dict]:
    counters, days = before
    for entry in json.loads(manifest_path.read_text())["exports"]:
        if entry["counter"] in counters:
            continue
        for period in entry.get("timeDependent", []):
            if "allEvents" in period and period["allEvents"]["files"] and period["periodId"] in days:
                return entry, period
    raise AssertionError("the scenario has no re-export of an earlier day after the first step")


def failure_messages(results) -> list[str]:
    return [message for _, result in results for message in step_failures(result)]


def loaded_then_reexported(settings: Settings, instance: dg.DagsterInstance) -> tuple[AppLocation, Path, dict, dict]:
    """Load the first step, then publish the next exports; returns a new re-export of an already loaded day."""
    generated = generate(scenario="small", out_dir=settings.exports, end_day=END_DAY, as_of=STEPS[0])
    assert all(result.success for _, result in tick_and_run(settings, instance, {}))
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    manifest_path = Path(settings.exports) / app.manifest_path
    before = loaded_state(manifest_path)
    generate(scenario="small", out_dir=settings.exports, end_day=END_DAY, as_of=STEPS[1])
    entry, period = new_reexport_of_a_loaded_day(manifest_path, before)
    return app, manifest_path, entry, period


def edit_all_events(manifest_path: Path, entry: dict, period: dict, edit) -> None:
    manifest = json.loads(manifest_path.read_text())
    for e in manifest["exports"]:
        for p in e.get("timeDependent", []):
            if e["counter"] == entry["counter"] and p["periodId"] == period["periodId"] and "allEvents" in p:
                edit(p["allEvents"])
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty"])
def test_a_bad_file_fails_its_day_and_leaves_earlier_rows_untouched(settings, damage):
    with dg.instance_for_test() as instance:
        app, manifest_path, entry, period = loaded_then_reexported(settings, instance)
        day = period["periodId"][:10]
        victim = manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[1] / period["allEvents"]["files"][0]
        day_rows_before = rows_of_day(snapshot(settings, app), day)
        assert any(day_rows_before.values())
        if damage == "missing":
            victim.unlink()
        elif damage == "truncated":
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
        else:
            victim.write_bytes(b"")

        results = tick_and_run(settings, instance, {})

        failed = [r for r, result in results if not result.success]
        assert len(failed) == 1 and day in days_of(failed[0])
        message = " ".join(failure_messages(results))
        assert victim.name in message and f"export {entry['counter']}" in message and day in message
        assert app.application_id in message
        assert same_rows(rows_of_day(snapshot(settings, app), day), day_rows_before)
        assert any(result.success for r, result in results if day not in days_of(r)), "other days must still load"


def test_a_count_that_disagrees_with_the_bill_of_materials_fails_and_keeps_the_day(settings):
    with dg.instance_for_test() as instance:
        app, manifest_path, entry, period = loaded_then_reexported(settings, instance)
        edit_all_events(manifest_path, entry, period, lambda slice_: slice_.update(eventCount=slice_["eventCount"] + 1))
        day = period["periodId"][:10]
        day_rows_before = rows_of_day(snapshot(settings, app), day)

        results = tick_and_run(settings, instance, {})

        message = " ".join(failure_messages(results))
        assert f"eventCount={period['allEvents']['eventCount'] + 1}" in message and day in message
        assert same_rows(rows_of_day(snapshot(settings, app), day), day_rows_before)


def test_a_file_name_climbing_out_of_its_export_is_refused_before_anything_changes(settings):
    with dg.instance_for_test() as instance:
        app, manifest_path, entry, period = loaded_then_reexported(settings, instance)
        edit_all_events(manifest_path, entry, period, lambda slice_: slice_.update(files=["../../../../etc/passwd"]))
        day = period["periodId"][:10]
        day_rows_before = rows_of_day(snapshot(settings, app), day)

        results = tick_and_run(settings, instance, {})

        message = " ".join(failure_messages(results))
        assert "'../../../../etc/passwd' must not contain" in message and f"export {entry['counter']}" in message
        assert same_rows(rows_of_day(snapshot(settings, app), day), day_rows_before)
