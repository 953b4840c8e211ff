"""Bad input never loses data: the run fails naming app, export, day and file; the day keeps its rows."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets.pendo.tables import AppLocation
from pendo_assets_tests.e2e import (days_of, edit_all_events, export_file, failure_messages, loaded_then_reexported,
                                    rewrite_avro, rows_of_day, same_rows, settings_in, snapshot, tick_and_run)


@pytest.fixture(scope="module")
def first_step_loaded(tmp_path_factory) -> tuple[Path, AppLocation, dict, dict]:
    """Loaded once per module: the first step in the warehouse and Dagster, the next exports published."""
    root = tmp_path_factory.mktemp("first-step")
    (root / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        app, _, entry, period = loaded_then_reexported(settings_in(root), instance)
    return root, app, entry, period


@pytest.fixture
def case(first_step_loaded, tmp_path: Path):
    """A private copy of the loaded first step: settings, instance, app, manifest path, re-export and its period."""
    root, app, entry, period = first_step_loaded
    shutil.copytree(root, tmp_path / "case")
    settings = settings_in(tmp_path / "case")
    with dg.instance_for_test(temp_dir=str(tmp_path / "case" / "dagster_home")) as instance:
        yield settings, instance, app, Path(settings.exports) / app.manifest_path, entry, period


def assert_day_failed_and_kept(settings, app, results, day, day_rows_before, *expected_in_message) -> str:
    """The run of `day` failed with a message naming app, day and `expected_in_message`; the day is unchanged."""
    failed = [r for r, result in results if not result.success]
    assert failed and all(day in days_of(r) for r in failed), [days_of(r) for r in failed]
    message = " ".join(failure_messages(results))
    for text in (app.application_id, day, *expected_in_message):
        assert text in message, (text, message)
    assert same_rows(rows_of_day(snapshot(settings, app), day), day_rows_before)
    assert any(result.success for r, result in results if day not in days_of(r)), "other days must still load"
    return message


# Each test reloads the next step through Dagster, 5-10 s apiece, so most are marked slow; `make test-fast`
# keeps a missing file and a rogue rootUrl.
@pytest.mark.parametrize("damage,victim_file", [
    ("missing", "allevents"),
    *[pytest.param(damage, victim_file, marks=pytest.mark.slow) for damage, victim_file in [
        ("truncated", "allevents"), ("empty", "allevents"), ("corrupt", "allevents"),
        # A matched file is opened and decoded ahead, while the files before it are still being written.
        ("empty", "last matched"), ("corrupt", "last matched")]]])
def test_a_bad_file_fails_its_day_and_leaves_earlier_rows_untouched(case, damage, victim_file):
    settings, instance, app, manifest_path, entry, period = case
    day = period["periodId"][:10]
    name = period["allEvents"]["files"][0] if victim_file == "allevents" else period["matchedEvents"][-1]["files"][-1]
    victim = export_file(manifest_path, entry, name)
    day_rows_before = rows_of_day(snapshot(settings, app), day)
    assert any(day_rows_before.values())
    if damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "corrupt":
        raw = bytearray(victim.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 64] = b"\xff" * 64
        victim.write_bytes(bytes(raw))
    else:
        victim.write_bytes(b"")

    results = tick_and_run(settings, instance, {})

    assert_day_failed_and_kept(settings, app, results, day, day_rows_before, victim.name,
                               f"export {entry['counter']}")


@pytest.mark.slow
def test_a_count_that_disagrees_with_the_bill_of_materials_fails_and_keeps_the_day(case):
    settings, instance, app, manifest_path, entry, period = case
    edit_all_events(manifest_path, entry, period, lambda slice_: slice_.update(eventCount=slice_["eventCount"] + 1))
    day = period["periodId"][:10]
    day_rows_before = rows_of_day(snapshot(settings, app), day)

    results = tick_and_run(settings, instance, {})

    assert_day_failed_and_kept(settings, app, results, day, day_rows_before, f"export {entry['counter']}",
                               f"eventCount={period['allEvents']['eventCount'] + 1}",
                               f"files hold {period['allEvents']['eventCount']} rows",
                               period["allEvents"]["files"][0])


@pytest.mark.slow
@pytest.mark.parametrize("name, problem", [
    ("../../../../etc/passwd", "must not contain"),
    ("/etc/passwd", "is absolute"),
    ("gs://another-bucket/datasync/1/2/x/allevents.avro", "is absolute"),
])
def test_a_file_name_pointing_out_of_its_export_is_refused_before_anything_changes(case, name, problem):
    settings, instance, app, manifest_path, entry, period = case
    edit_all_events(manifest_path, entry, period, lambda slice_: slice_.update(files=[name]))
    day = period["periodId"][:10]
    day_rows_before = rows_of_day(snapshot(settings, app), day)

    results = tick_and_run(settings, instance, {})

    assert_day_failed_and_kept(settings, app, results, day, day_rows_before, f"{name!r} {problem}",
                               f"export {entry['counter']}")


def test_a_root_url_naming_another_bucket_is_refused_and_nothing_changes(case):
    settings, instance, app, manifest_path, entry, period = case
    manifest = json.loads(manifest_path.read_text())
    rogue = next(e for e in manifest["exports"] if e["counter"] == entry["counter"])
    bucket = rogue["rootUrl"].split("/")[2]
    rogue["rootUrl"] = rogue["rootUrl"].replace(f"//{bucket}/", "//another-bucket/")
    manifest_path.write_text(json.dumps(manifest))
    before = snapshot(settings, app)

    results = tick_and_run(settings, instance, {})

    assert results and not any(result.success for _, result in results)
    message = " ".join(failure_messages(results))
    assert f"export {entry['counter']}: rootUrl" in message and "'another-bucket'" in message, message
    assert f"exports live in bucket {bucket!r}" in message and app.application_id in message
    assert snapshot(settings, app) == before


@pytest.mark.slow
def test_a_partial_manifest_fails_the_tick_naming_it_and_the_next_good_one_loads(case):
    settings, instance, app, manifest_path, entry, period = case
    complete = manifest_path.read_text()
    manifest_path.write_text(complete[: len(complete) // 2])
    before = snapshot(settings, app)
    cursors: dict[str, str | None] = {}

    with pytest.raises(Exception) as failed_tick:
        tick_and_run(settings, instance, cursors)

    message = str(failed_tick.value) + str(getattr(failed_tick.value, "__cause__", ""))
    assert "not valid JSON" in message and f"{app.application_id}/exportmanifest.json" in message, message
    assert snapshot(settings, app) == before
    manifest_path.write_text(complete)
    results = tick_and_run(settings, instance, cursors)
    assert results and all(result.success for _, result in results)
    assert snapshot(settings, app) != before


@pytest.mark.slow
def test_an_unknown_matched_type_stops_the_app_naming_export_day_and_file(case):
    settings, instance, app, manifest_path, entry, period = case
    manifest = json.loads(manifest_path.read_text())
    target = next(p for e in manifest["exports"] if e["counter"] == entry["counter"]
                  for p in e["timeDependent"] if p["periodId"] == period["periodId"])
    target.setdefault("matchedEvents", []).append(
        {"id": "Guide/g1", "type": "Guide", "files": ["matchedEvents/Guide/g1.avro"], "eventCount": 2})
    manifest_path.write_text(json.dumps(manifest))
    before = snapshot(settings, app)

    with pytest.raises(Exception) as failed_tick:
        tick_and_run(settings, instance, {})

    message = str(failed_tick.value) + str(getattr(failed_tick.value, "__cause__", ""))
    for text in ("unknown matched type 'Guide'", f"export {entry['counter']}", f"day {period['periodId'][:10]}",
                 "matchedEvents/Guide/g1.avro", f"{app.application_id}/exportmanifest.json"):
        assert text in message, (text, message)
    assert snapshot(settings, app) == before


@pytest.mark.slow
def test_rows_of_another_day_in_a_days_file_fail_that_day_and_keep_it(case):
    settings, instance, app, manifest_path, entry, period = case
    day = period["periodId"][:10]
    victim = export_file(manifest_path, entry, period["allEvents"]["files"][0])

    def shift_first_row(records):
        records[0]["periodId"] = records[0]["periodId"] - timedelta(days=3)
        return records
    rewrite_avro(victim, shift_first_row)
    day_rows_before = rows_of_day(snapshot(settings, app), day)

    results = tick_and_run(settings, instance, {})

    assert_day_failed_and_kept(settings, app, results, day, day_rows_before, victim.name,
                               f"export {entry['counter']}", "1 row(s) whose periodId is not")


@pytest.mark.slow
def test_an_event_id_twice_in_a_day_fails_the_day_and_keeps_it(case):
    settings, instance, app, manifest_path, entry, period = case
    day = period["periodId"][:10]
    victim = export_file(manifest_path, entry, period["allEvents"]["files"][0])
    rewrite_avro(victim, lambda records: records + records[:1])
    edit_all_events(manifest_path, entry, period, lambda slice_: slice_.update(eventCount=slice_["eventCount"] + 1))
    day_rows_before = rows_of_day(snapshot(settings, app), day)

    results = tick_and_run(settings, instance, {})

    assert_day_failed_and_kept(settings, app, results, day, day_rows_before, victim.name,
                               f"export {entry['counter']}", "the same eventId appears more than once")
