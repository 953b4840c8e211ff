"""The synthetic export generator: Pendo's file contract, determinism, and its ground truth."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import fastavro
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pendo_assets.generator import SCENARIOS, GeneratedApp, GeneratedExports, generate
from pendo_assets.generator.cli import add_generate_arguments, run_generate
from pendo_assets.generator.exports import listed_files

END_DAY = date(2024, 4, 15)
PENDO_ID = re.compile(r"^[A-Za-z0-9_-]{27}$")
DEFINITION_KEYS = {
    "pageDefinitionsFile": ("PAGES", "pageId"),
    "featureDefinitionsFile": ("FEATURES", "featureId"),
    "trackTypeDefinitionsFile": ("TRACKTYPES", "trackTypeId"),
    "guideDefinitionsFile": ("GUIDES", "guideId"),
}
TRUTH_DEFINITION_KEYS = ("name", "rulesUpdatedAt", "deletedAt", "softDeleteMethod")
MATCHED_TABLES = {"Page": "MATCHEDPAGEEVENTS", "Feature": "MATCHEDFEATUREEVENTS",
                  "TrackType": "MATCHEDTRACKTYPEEVENTS"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GeneratedExports:
    return generate(scenario="small", out_dir=tmp_path_factory.mktemp("small"), end_day=END_DAY)


@pytest.fixture(scope="module")
def small_app(small: GeneratedExports) -> GeneratedApp:
    (app,) = small.apps
    return app


@pytest.fixture(scope="module")
def small_app_on_rule_change_day(tmp_path_factory: pytest.TempPathFactory) -> GeneratedApp:
    """The bucket right after the retroactive export, before any finalized copy uses the new rules."""
    scenario = SCENARIOS["small"]
    as_of = END_DAY - timedelta(days=scenario.export_days - scenario.lifecycle.rule_change_day)
    (app,) = generate(scenario="small", out_dir=tmp_path_factory.mktemp("retro"), end_day=END_DAY,
                      as_of=as_of).apps
    return app


def read_rows(path: Path) -> list[dict]:
    with path.open("rb") as avro_file:
        return list(fastavro.reader(avro_file))


def rows_of(folder: Path, names: list[str]) -> list[dict]:
    return [row for name in names for row in read_rows(folder / name)]


def manifest_of(app: GeneratedApp) -> dict:
    return json.loads(app.manifest_path.read_text(encoding="utf-8"))


def export_folder(app: GeneratedApp, entry: dict) -> Path:
    return app.manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[-1]


def period_day(period: dict) -> date:
    return date.fromisoformat(period["periodId"][:10])


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


@dataclass
class LoadedWarehouse:
    """What a loader following Pendo's documented load rules holds after replaying the exports."""

    allevents: dict[date, set[str]] = field(default_factory=dict)
    matched: dict[str, dict[date, dict[str, list[dict]]]] = field(
        default_factory=lambda: {table: defaultdict(dict) for table in MATCHED_TABLES.values()})
    definitions: dict[str, dict[str, dict]] = field(
        default_factory=lambda: {table: {} for table, _ in DEFINITION_KEYS.values()})

    def matched_pairs(self, table: str, day: date) -> set[tuple[str, str]]:
        return {(row["matchableId"], row["eventId"])
                for rows in self.matched[table].get(day, {}).values() for row in rows}


def replay(app: GeneratedApp, entries: list[dict], replace_whole_periods: bool) -> LoadedWarehouse:
    warehouse = LoadedWarehouse()
    for entry in sorted(entries, key=lambda entry: entry["counter"]):
        folder = export_folder(app, entry)
        for key, (table, id_field) in DEFINITION_KEYS.items():
            for name in entry.get(key, []):
                warehouse.definitions[table].update((row[id_field], row) for row in read_rows(folder / name))
        for period in entry["timeDependent"]:
            day = period_day(period)
            if "allEvents" in period:
                all_events = rows_of(folder, period["allEvents"]["files"])
                warehouse.allevents[day] = {row["eventId"] for row in all_events}
                if replace_whole_periods:
                    for matched in warehouse.matched.values():
                        matched[day] = {}
            for matched in period.get("matchedEvents", []):
                object_type, matchable_id = matched["id"].split("/", 1)
                rows = rows_of(folder, matched["files"])
                warehouse.matched[MATCHED_TABLES[object_type]][day][matchable_id] = rows
    return warehouse


def test_bom_event_counts_equal_rows_in_listed_files(small_app: GeneratedApp) -> None:
    for entry in manifest_of(small_app)["exports"]:
        folder = export_folder(small_app, entry)
        for period in entry["timeDependent"]:
            slices = [period["allEvents"]] if "allEvents" in period else []
            for matched in period.get("matchedEvents", []):
                rows = rows_of(folder, matched["files"])
                assert {row["matchableId"] for row in rows} <= {matched["id"].split("/", 1)[1]}
                slices.append(matched)
            for listed in slices:
                rows = rows_of(folder, listed["files"])
                assert len(rows) == listed["eventCount"]
                assert {row["periodId"] for row in rows} <= {period_day(period)}


def test_every_export_lists_exactly_its_avro_files(small_app: GeneratedApp) -> None:
    for entry in manifest_of(small_app)["exports"]:
        folder = export_folder(small_app, entry).resolve()
        names = listed_files(entry)
        on_disk = {str(path.relative_to(folder)) for path in folder.rglob("*.avro")}
        assert entry["numberOfFiles"] == len(names) == len(set(names)) == len(on_disk)
        assert set(names) == on_disk
        assert all((folder / name).resolve().is_relative_to(folder) for name in names)
        assert entry["storageSize"] == sum((folder / name).stat().st_size for name in names)
        bom = json.loads((folder / "billofmaterials.json").read_text(encoding="utf-8"))
        assert bom == {key: value for key, value in entry.items()
                       if key not in {"counter", "exportType", "finishTime", "storageSize", "rootUrl"}}


def test_manifest_counters_increase_and_stay_within_30_days(small_app: GeneratedApp) -> None:
    entries = manifest_of(small_app)["exports"]
    counters = [entry["counter"] for entry in entries]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    finish_times = [datetime.fromisoformat(entry["finishTime"]) for entry in entries]
    assert max(finish_times) - min(finish_times) <= timedelta(days=30)
    assert entries[0]["rootUrl"].startswith("gs://acme-pendo-exports/datasync/5123456789012345/-323232/")
    assert {tuple(entry["exportType"] or ()) for entry in entries} == {(), ("Retroactive",)}


def test_first_export_is_a_one_time_backfill_in_per_day_folders(small_app: GeneratedApp) -> None:
    backfill = manifest_of(small_app)["exports"][0]
    days = [period_day(period) for period in backfill["timeDependent"]]
    assert backfill["exportType"] is None and len(days) == SCENARIOS["small"].backfill_days
    assert days == sorted(days) and max(days) < datetime.fromisoformat(backfill["timestamp"]).date()
    for period, day in zip(backfill["timeDependent"], days):
        assert all(name.startswith(f"{day.isoformat()}/") for name in period["allEvents"]["files"])


def test_manifest_rotates_out_exports_older_than_30_days_but_keeps_their_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCENARIOS, "long", replace(SCENARIOS["small"], export_days=40))
    (app,) = generate(scenario="long", out_dir=tmp_path, end_day=END_DAY).apps
    entries = manifest_of(app)["exports"]
    finish_times = [datetime.fromisoformat(entry["finishTime"]) for entry in entries]
    assert entries[0]["counter"] > 1
    assert max(finish_times) - min(finish_times) <= timedelta(days=30)
    folders = [path for path in app.manifest_path.parent.iterdir() if path.is_dir()]
    assert len(folders) == app.published_exports > len(entries) == app.manifest_exports
    assert all((folder / "billofmaterials.json").exists() for folder in folders)


def test_ids_are_27_char_url_safe_and_some_start_with_dash_or_underscore(small_app: GeneratedApp) -> None:
    truth = small_app.truth
    object_ids = [object_id for objects in truth.definitions.values() for object_id in objects]
    event_ids = [event_id for ids in truth.allevents.values() for event_id in ids]
    assert all(PENDO_ID.match(identifier) for identifier in object_ids + event_ids)
    assert {object_id[0] for object_id in object_ids} >= {"-", "_"}
    folders = [path.name for path in small_app.manifest_path.parent.iterdir() if path.is_dir()]
    assert all(re.fullmatch(r"[0-9a-f]{32}", name) for name in folders)


def test_same_seed_gives_byte_identical_trees_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = (tmp_path / name for name in ("first", "second", "other"))
    generate(scenario="small", out_dir=first, end_day=END_DAY, seed=11)
    generate(scenario="small", out_dir=second, end_day=END_DAY, seed=11)
    generate(scenario="small", out_dir=other, end_day=END_DAY, seed=12)
    assert tree_bytes(first) == tree_bytes(second)
    assert tree_bytes(first) != tree_bytes(other)


def test_growing_as_of_publishes_a_prefix_and_ends_with_the_same_bytes(
        tmp_path: Path, small: GeneratedExports) -> None:
    final_entries = manifest_of(small.apps[0])["exports"]
    first_day = END_DAY - timedelta(days=SCENARIOS["small"].export_days - 1)
    incremental = tmp_path / "incremental"
    for offset in range(SCENARIOS["small"].export_days):
        as_of = first_day + timedelta(days=offset)
        result = generate(scenario="small", out_dir=incremental, end_day=END_DAY, as_of=as_of)
        entries = manifest_of(result.apps[0])["exports"]
        assert entries == final_entries[:len(entries)]
        assert datetime.fromisoformat(entries[-1]["timestamp"]).date() == as_of
    assert tree_bytes(incremental) == tree_bytes(small.out_dir)


def test_as_of_outside_the_simulated_days_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(scenario="small", out_dir=tmp_path, end_day=END_DAY, as_of=END_DAY + timedelta(days=1))


def test_truth_counts_match_the_latest_export_of_days_without_retroactive_changes(
        small_app: GeneratedApp) -> None:
    entries = manifest_of(small_app)["exports"]
    retro_days = {period_day(period) for entry in entries if entry["exportType"] == ["Retroactive"]
                  for period in entry["timeDependent"]}
    latest: dict[date, tuple[dict, dict]] = {}
    for entry in entries:
        for period in entry["timeDependent"]:
            if "allEvents" in period:
                latest[period_day(period)] = (entry, period)
    checked = 0
    for day, (entry, period) in latest.items():
        truth = small_app.truth.event_counts
        assert truth[("ALLEVENTS", day)] == period["allEvents"]["eventCount"]
        if day in retro_days:
            continue
        for table in MATCHED_TABLES.values():
            listed = sum(matched["eventCount"] for matched in period["matchedEvents"]
                         if MATCHED_TABLES[matched["type"]] == table)
            assert truth[(table, day)] == listed
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("replace_whole_periods", [False, True])
@pytest.mark.parametrize("app_fixture", ["small_app", "small_app_on_rule_change_day"])
def test_replaying_exports_with_pendos_load_rules_reaches_the_truth(
        request: pytest.FixtureRequest, app_fixture: str, replace_whole_periods: bool) -> None:
    app: GeneratedApp = request.getfixturevalue(app_fixture)
    warehouse = replay(app, manifest_of(app)["exports"], replace_whole_periods)
    assert warehouse.allevents == app.truth.allevents
    for table, days in app.truth.matched.items():
        assert {day: warehouse.matched_pairs(table, day) for day in days} == days
    for table, objects in app.truth.definitions.items():
        assert {object_id: {key: row.get(key) for key in TRUTH_DEFINITION_KEYS}
                for object_id, row in warehouse.definitions[table].items()} == objects


def test_seed_003_queries_find_both_stale_and_valid_feature_rows(small_app: GeneratedApp) -> None:
    warehouse = replay(small_app, manifest_of(small_app)["exports"], replace_whole_periods=False)
    features = warehouse.definitions["FEATURES"]
    stale, valid = 0, 0
    for by_matchable in warehouse.matched["MATCHEDFEATUREEVENTS"].values():
        for feature_id, rows in by_matchable.items():
            feature = features[feature_id]
            for row in rows:
                outdated = row["lastUpdatedAt"] is None or row["lastUpdatedAt"] < feature["rulesUpdatedAt"]
                stale += feature["deletedAt"] is not None or (feature["softDeleteMethod"] == 2 and outdated)
                valid += feature["deletedAt"] is None and (
                    feature["softDeleteMethod"] == 1 or (feature["softDeleteMethod"] == 2 and not outdated))
    assert stale > 0 and valid > 0
    assert {feature["softDeleteMethod"] for feature in features.values()} >= {1, 2}


def test_retroactive_export_reexports_lifetime_with_deletes_and_partial_definitions(
        small_app: GeneratedApp) -> None:
    entries = manifest_of(small_app)["exports"]
    (retro,) = [entry for entry in entries if entry["exportType"] == ["Retroactive"]]
    earlier_days = {period_day(period) for entry in entries if entry["counter"] < retro["counter"]
                    for period in entry["timeDependent"]}
    assert {period_day(period) for period in retro["timeDependent"]} == earlier_days
    assert all("allEvents" not in period for period in retro["timeDependent"])
    slices = [matched for period in retro["timeDependent"] for matched in period["matchedEvents"]]
    assert any(matched["files"] == [] and matched["eventCount"] == 0 for matched in slices)
    assert any(matched["eventCount"] > 0 for matched in slices)
    assert "guideDefinitionsFile" not in retro and "trackTypeDefinitionsFile" not in retro
    folder = export_folder(small_app, retro)
    changed = rows_of(folder, retro["featureDefinitionsFile"])
    assert len(changed) == 1
    assert changed[0]["rulesUpdatedAt"] <= datetime.fromisoformat(retro["timestamp"])


def test_finalized_day_adds_late_events_and_late_matches(small_app: GeneratedApp) -> None:
    versions: dict[date, list[tuple[set[str], set[str]]]] = defaultdict(list)
    for entry in manifest_of(small_app)["exports"]:
        folder = export_folder(small_app, entry)
        for period in entry["timeDependent"]:
            if "allEvents" in period:
                all_ids = {row["eventId"] for row in rows_of(folder, period["allEvents"]["files"])}
                matched_ids = {row["eventId"] for matched in period["matchedEvents"]
                               for row in rows_of(folder, matched["files"])}
                versions[period_day(period)].append((all_ids, matched_ids))
    finalized = {day: pair for day, pair in versions.items() if len(pair) == 2}
    assert finalized
    late_matches = 0
    for (early_all, early_matched), (final_all, final_matched) in finalized.values():
        assert early_all <= final_all
        late_matches += len((final_matched - early_matched) & early_all)
    assert any(early_all < final_all for (early_all, _), (final_all, _) in finalized.values())
    assert late_matches > 0


def test_multi_file_day_has_three_parts_one_empty(small_app: GeneratedApp) -> None:
    split = [(entry, period["allEvents"]["files"]) for entry in manifest_of(small_app)["exports"]
             for period in entry["timeDependent"] if len(period.get("allEvents", {}).get("files", [])) > 1]
    assert split
    for entry, files in split:
        assert [name.rsplit("/", 1)[-1] for name in files] == ["allevents-000.avro", "allevents-001.avro",
                                                               "allevents-002.avro"]
        assert 0 in [len(read_rows(export_folder(small_app, entry) / name)) for name in files]


def test_large_days_split_at_the_row_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = replace(SCENARIOS["small"], max_rows_per_file=20)
    monkeypatch.setitem(SCENARIOS, "split", scenario)
    (app,) = generate(scenario="split", out_dir=tmp_path, end_day=END_DAY).apps
    multi_file_day = END_DAY - timedelta(days=scenario.export_days - scenario.multi_file_period_day)
    split_periods = 0
    for entry in manifest_of(app)["exports"]:
        for period in entry["timeDependent"]:
            if "allEvents" not in period or period_day(period) == multi_file_day:
                continue
            files = period["allEvents"]["files"]
            row_counts = [len(read_rows(export_folder(app, entry) / name)) for name in files]
            assert max(row_counts) <= 20 and sum(row_counts) == period["allEvents"]["eventCount"]
            split_periods += len(files) > 1
    assert split_periods > 0


def test_event_files_drift_to_carry_session_id(small_app: GeneratedApp) -> None:
    drift_day = END_DAY - timedelta(days=SCENARIOS["small"].export_days - SCENARIOS["small"].schema_drift_day)
    for entry in manifest_of(small_app)["exports"]:
        name = listed_files({"timeDependent": entry["timeDependent"]})[0]
        with (export_folder(small_app, entry) / name).open("rb") as avro_file:
            fields = [item["name"] for item in fastavro.reader(avro_file).writer_schema["fields"]]
        exported_on = datetime.fromisoformat(entry["timestamp"]).date()
        assert ("sessionId" in fields) == (exported_on >= drift_day)


def test_tree_mixes_codecs_and_has_pendo_shaped_events(small_app: GeneratedApp) -> None:
    codecs, event_types, minutes_of_day, anonymous, non_ascii_urls = set(), set(), set(), 0, 0
    for path in small_app.manifest_path.parent.rglob("*.avro"):
        with path.open("rb") as avro_file:
            reader = fastavro.reader(avro_file)
            codecs.add(reader.codec)
            if path.name.startswith("allevents"):
                for row in reader:
                    event_types.add(row["eventType"])
                    assert row["periodId"] == row["browserTimestamp"].date()
                    minutes_of_day.add(row["browserTimestamp"].hour * 60 + row["browserTimestamp"].minute)
                    anonymous += row["visitorId"].startswith("_PENDO_T_") and row["accountId"] is None
                    non_ascii_urls += bool(row["url"]) and not row["url"].isascii()
    assert codecs == {"null", "deflate", "snappy"}
    assert {"load", "click", "track", "guideSeen", "pollResponse"} <= event_types
    assert min(minutes_of_day) < 5 and max(minutes_of_day) >= 24 * 60 - 5
    assert anonymous > 0 and non_ascii_urls > 0


@settings(max_examples=3, deadline=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_gives_a_tree_that_replays_to_its_truth(
        tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    out_dir = tmp_path_factory.mktemp("seeded")
    result = generate(scenario="small", out_dir=out_dir, end_day=END_DAY, seed=seed)
    (app,) = result.apps
    warehouse = replay(app, manifest_of(app)["exports"], replace_whole_periods=False)
    assert warehouse.allevents == app.truth.allevents
    for table, days in app.truth.matched.items():
        assert {day: warehouse.matched_pairs(table, day) for day in days} == days


def test_cli_writes_the_scenario_and_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--scenario", "small", "--end-day", "2024-04-15",
                              "--as-of", "2024-04-10", "--seed", "3", "--bucket", "other-bucket"])
    assert run_generate(args) == 0
    manifest = tmp_path / "datasync" / "5123456789012345" / "-323232" / "exportmanifest.json"
    entries = json.loads(manifest.read_text(encoding="utf-8"))["exports"]
    assert entries[-1]["rootUrl"].startswith("gs://other-bucket/")
    assert "-323232" in capsys.readouterr().out
    assert all(action.help for action in parser._actions)
