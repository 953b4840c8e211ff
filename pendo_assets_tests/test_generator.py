"""The synthetic export generator: Pendo's file contract for every scenario, determinism, and ground truth."""

from __future__ import annotations

import argparse
import json
import re
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import fastavro
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pendo_assets.generator import SCENARIOS, GeneratedApp, GeneratedExports, Scenario, Truth, generate
from pendo_assets.generator.avro_files import ExportFolder, PartFormat, SplitAvroSink, SplitLimits
from pendo_assets.generator.cli import add_generate_arguments, run_generate
from pendo_assets.generator.exports import BOM_NAME, listed_files
from pendo_assets.generator.schemas import event_schema
from pendo_assets.generator.spec import EventEncoding, Lifecycle

END_DAY = date(2024, 4, 15)
PENDO_ID = re.compile(r"^[A-Za-z0-9_-]{27}$")
AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PERIOD_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00Z$")
EXPORT_FOLDER = re.compile(r"^[0-9a-f]{32}$")
ANONYMOUS_VISITOR = re.compile(r"^_PENDO_T_[A-Za-z0-9_-]{11}$")
DEFINITION_KEYS = {
    "pageDefinitionsFile": ("PAGES", "pageId"),
    "featureDefinitionsFile": ("FEATURES", "featureId"),
    "trackTypeDefinitionsFile": ("TRACKTYPES", "trackTypeId"),
    "guideDefinitionsFile": ("GUIDES", "guideId"),
}
TRUTH_DEFINITION_KEYS = ("name", "rulesUpdatedAt", "deletedAt", "softDeleteMethod")
MATCHED_TABLES = {"Page": "MATCHEDPAGEEVENTS", "Feature": "MATCHEDFEATUREEVENTS",
                  "TrackType": "MATCHEDTRACKTYPEEVENTS"}
EXPORT_TYPES = (None, ["Retroactive"], ["Test"])
DELIVERY_KEYS = ("counter", "exportType", "finishTime", "storageSize", "rootUrl")
MATCH_COLUMNS = ("matchableId", "lastUpdatedAt")
BENCH_DAY_TEST_EVENTS = 3_000
# bench-day is checked at a small volume; every other scenario at its own.
INVARIANT_CASES = [(name, BENCH_DAY_TEST_EVENTS if name == "bench-day" else None) for name in SCENARIOS]
# The biggest buckets take 10-30 s to generate and check; the others, under 2 s.
SLOW_SCENARIOS = {"demo", "one-time-3-years"}


def read_rows(path: Path) -> list[dict]:
    with path.open("rb") as avro_file:
        return list(fastavro.reader(avro_file))


def rows_of(folder: Path, names: list[str]) -> list[dict]:
    return [row for name in names for row in read_rows(folder / name)]


def writer_fields(path: Path) -> list[str]:
    with path.open("rb") as avro_file:
        return [item["name"] for item in fastavro.reader(avro_file).writer_schema["fields"]]


def manifest_of(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def folder_of(manifest_path: Path, entry: dict) -> Path:
    return manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[-1]


def period_day(period: dict) -> date:
    return date.fromisoformat(period["periodId"][:10])


def period_id_shape(period_id: object) -> str:
    """Which of Pendo's periodId encodings an event row's value is in, as fastavro decodes it."""
    if isinstance(period_id, date):
        return "date"
    if isinstance(period_id, str):
        return "ISO text"
    return "yyyymmdd" if period_id >= 10_000_000 else "days since 1970"


def event_day(period_id: object) -> date:
    shape = period_id_shape(period_id)
    if shape == "date":
        return period_id
    if shape == "ISO text":
        return date.fromisoformat(period_id)
    if shape == "yyyymmdd":
        return date(period_id // 10_000, period_id // 100 % 100, period_id % 100)
    return date(1970, 1, 1) + timedelta(days=period_id)


def with_event_day(row: dict) -> dict:
    return {**row, "periodId": event_day(row["periodId"])}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def day_of(scenario: Scenario, day_number: int) -> date:
    return END_DAY - timedelta(days=scenario.export_days - day_number)


@dataclass
class Walk:
    """A scenario generated on each of its sync days into one bucket, and every manifest entry seen."""

    name: str
    scenario: Scenario
    events_per_day: int | None
    generated: GeneratedExports
    seen: dict[Path, dict[int, dict]] = field(default_factory=lambda: defaultdict(dict))

    def app_entries(self, app: GeneratedApp) -> list[dict]:
        return [entry for _, entry in sorted(self.seen[app.manifest_path].items())]

    def missing_paths(self) -> set[Path]:
        return {missing.path for app in self.generated.apps for missing in app.missing_files}

    def manifests(self) -> list[Path]:
        return [*(app.manifest_path for app in self.generated.apps),
                *(path for subscription in self.generated.subscriptions
                  for path in (subscription.visitor_manifest_path, subscription.account_manifest_path))]


@pytest.fixture(scope="module", ids=[name for name, _ in INVARIANT_CASES],
                params=[pytest.param(case, marks=pytest.mark.slow if case[0] in SLOW_SCENARIOS else ())
                        for case in INVARIANT_CASES])
def walk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Walk:
    name, events_per_day = request.param
    scenario = SCENARIOS[name]
    out_dir = tmp_path_factory.mktemp(name)
    walked = None
    for day_number in scenario.checkpoints:
        last = day_number == scenario.export_days
        generated = generate(name, out_dir, end_day=END_DAY, as_of=day_of(scenario, day_number),
                             events_per_day=events_per_day, with_truth=last)
        walked = walked or Walk(name, scenario, events_per_day, generated)
        walked.generated = generated
        for manifest_path in walked.manifests():
            for entry in manifest_of(manifest_path)["exports"]:
                walked.seen[manifest_path][entry["counter"]] = entry
    return walked


def test_every_published_export_is_listed_on_some_sync_day(walk: Walk) -> None:
    for app in walk.generated.apps:
        assert len(walk.seen[app.manifest_path]) == app.published_exports
    for subscription in walk.generated.subscriptions:
        for manifest_path in (subscription.visitor_manifest_path, subscription.account_manifest_path):
            assert len(walk.seen[manifest_path]) == walk.scenario.export_days


def test_bom_event_counts_equal_rows_of_the_listed_files(walk: Walk) -> None:
    missing = walk.missing_paths()
    for app in walk.generated.apps:
        for entry in walk.app_entries(app):
            folder = folder_of(app.manifest_path, entry)
            for period in entry["timeDependent"]:
                slices = [("allEvents", period["allEvents"])] if "allEvents" in period else []
                slices += [(matched["id"], matched) for matched in period.get("matchedEvents", [])]
                for slice_id, listed in slices:
                    if any(folder / name in missing for name in listed["files"]):
                        continue
                    rows = rows_of(folder, listed["files"])
                    assert len(rows) == listed["eventCount"], (entry["counter"], slice_id)
                    assert {event_day(row["periodId"]) for row in rows} <= {period_day(period)}
                    if slice_id != "allEvents":
                        assert {row["matchableId"] for row in rows} <= {slice_id.split("/", 1)[1]}


def test_matched_rows_are_allevents_rows_that_the_objects_rule_matches(walk: Walk) -> None:
    """Rules as the same export's definition files state them (a retroactive one carries the changed ones)."""
    rules: dict[str, object] = {}
    for app in walk.generated.apps:
        for entry in walk.app_entries(app):
            folder = folder_of(app.manifest_path, entry)
            for key, (_, id_field) in DEFINITION_KEYS.items():
                for row in rows_of(folder, entry.get(key, [])):
                    rules[row[id_field]] = row.get("eventName") or json.loads(row.get("rules") or "null")
            for period in entry["timeDependent"]:
                if any(not (folder / name).exists() for name in period.get("allEvents", {}).get("files", [])):
                    continue
                all_event_files = period.get("allEvents", {}).get("files", [])
                all_events = {row["eventId"]: with_event_day(row) for row in rows_of(folder, all_event_files)}
                for matched in period["matchedEvents"]:
                    for row in rows_of(folder, matched["files"]):
                        assert rule_matches(rules[row["matchableId"]], row), (matched["id"], row)
                        if all_events:
                            event = {key: value for key, value in with_event_day(row).items()
                                     if key not in MATCH_COLUMNS}
                            assert all_events[row["eventId"]] == event


def rule_matches(rule: object, row: dict) -> bool:
    if isinstance(rule, str):
        return row["eventType"] == "track" and json.loads(row["propertiesJson"])["name"] == rule
    (condition,) = rule
    if condition["kind"] == "url":
        return row["url"] is not None and urlsplit(row["url"]).path == condition["path"]
    return row["elementPath"] == condition["elementPath"]


def test_file_lists_are_complete_and_inside_their_export_folder(walk: Walk) -> None:
    missing = walk.missing_paths()
    for manifest_path in walk.manifests():
        for entry in walk.seen[manifest_path].values():
            folder = folder_of(manifest_path, entry).resolve()
            names = listed_files(entry)
            assert all(not name.startswith("/") and ".." not in name.split("/") for name in names)
            assert all((folder / name).resolve().is_relative_to(folder) for name in names)
            on_disk = {str(path.relative_to(folder)) for path in folder.rglob("*.avro")}
            absent = {name for name in names if folder / name in missing}
            assert entry["numberOfFiles"] == len(names) == len(set(names))
            assert set(names) - absent == on_disk
            assert entry["storageSize"] == sum((folder / name).stat().st_size for name in on_disk)
            bom = json.loads((folder / BOM_NAME).read_text(encoding="utf-8"))
            assert bom == {key: value for key, value in entry.items() if key not in DELIVERY_KEYS}


def test_manifests_list_only_complete_exports_within_30_days(walk: Walk) -> None:
    for manifest_path in walk.manifests():
        manifest = manifest_of(manifest_path)
        entries = manifest["exports"]
        counters = [entry["counter"] for entry in entries]
        assert counters == sorted(set(counters))
        assert all(entry["exportType"] in EXPORT_TYPES for entry in entries)
        finish_times = [datetime.fromisoformat(entry["finishTime"]) for entry in entries]
        assert max(finish_times) - min(finish_times) <= timedelta(days=30)
        assert datetime.fromisoformat(manifest["generatedTime"][:26] + "Z") > max(finish_times)
        for entry in entries:
            assert (folder_of(manifest_path, entry) / BOM_NAME).is_file()
        listed_folders = {folder_of(manifest_path, entry).name for entry in entries}
        folders = {path.name for path in manifest_path.parent.iterdir() if path.is_dir()}
        unlisted = {path.name for app in walk.generated.apps if app.manifest_path == manifest_path
                    for path in app.uploading_folders}
        assert not unlisted & listed_folders
        for name in folders - listed_folders:
            bom_present = (manifest_path.parent / name / BOM_NAME).exists()
            assert bom_present != (name in unlisted), "a folder outside the manifest rotated out or uploads"


def test_root_urls_name_the_destination_and_the_export_folder(walk: Walk) -> None:
    for manifest_path in walk.manifests():
        relative = manifest_path.parent.relative_to(walk.generated.out_dir).as_posix()
        for entry in walk.seen[manifest_path].values():
            folder = entry["rootUrl"].rsplit("/", 1)[-1]
            assert entry["rootUrl"] == f"gs://acme-pendo-exports/{relative}/{folder}"
            assert EXPORT_FOLDER.match(folder)


def test_ids_are_well_formed(walk: Walk) -> None:
    for app in walk.generated.apps:
        assert re.fullmatch(r"-?\d+", app.application_id) and re.fullmatch(r"\d+", app.subscription_id)
        object_ids = [object_id for objects in app.truth.definitions.values() for object_id in objects]
        assert all(PENDO_ID.match(object_id) for object_id in object_ids)
        assert {object_id[0] for object_id in object_ids} >= {"-", "_"}
        for entry in walk.app_entries(app):
            assert entry["application"]["id"] == app.application_id
            assert entry["subscription"]["id"] == app.subscription_id
            folder = folder_of(app.manifest_path, entry)
            for period in entry["timeDependent"]:
                assert PERIOD_ID.match(period["periodId"])
                for matched in period.get("matchedEvents", []):
                    object_type, object_id = matched["id"].split("/", 1)
                    assert matched["type"] == object_type and object_type in MATCHED_TABLES
                    assert PENDO_ID.match(object_id)
                for name in period.get("allEvents", {}).get("files", []):
                    if (folder / name).exists():
                        for row in read_rows(folder / name):
                            visitor = row["visitorId"]
                            assert PENDO_ID.match(row["eventId"])
                            anonymous = visitor.startswith("_PENDO_T_")
                            assert visitor and (not anonymous or ANONYMOUS_VISITOR.match(visitor))
    for subscription in walk.generated.subscriptions:
        for truth in (subscription.visitor_truth, subscription.account_truth):
            assert truth.records and all(AVRO_NAME.match(name) for name in truth.fields)


def test_replaying_every_export_with_pendos_load_rules_reaches_the_truth(walk: Walk) -> None:
    lost = {(missing.counter, missing.day) for app in walk.generated.apps for missing in app.missing_files}
    for app in walk.generated.apps:
        warehouse = replay(app.manifest_path, walk.app_entries(app), refused=lost)
        assert warehouse.allevents == {day: ids for day, ids in app.truth.allevents.items()}
        for table, days in app.truth.matched.items():
            assert {day: warehouse.matched_pairs(table, day) for day in days} == days
        assert_rows_carry_the_truths_instants(warehouse, app.truth)
        for table, objects in app.truth.definitions.items():
            assert {object_id: {key: row.get(key) for key in TRUTH_DEFINITION_KEYS}
                    for object_id, row in warehouse.definitions[table].items()} == objects


def test_counts_without_event_ids_equal_the_truth_counts(walk: Walk) -> None:
    counted = generate(walk.name, walk.generated.out_dir, end_day=END_DAY, events_per_day=walk.events_per_day,
                       with_truth=False)
    for with_ids, counts_only in zip(walk.generated.apps, counted.apps):
        assert counts_only.truth.event_counts == with_ids.truth.event_counts
        assert not counts_only.truth.allevents


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(walk: Walk, tmp_path: Path) -> None:
    """At a few events a day, which is enough to compare every kind of file the scenario writes."""
    trees = []
    for folder, seed in (("first", 11), ("second", 11), ("other", 12)):
        generate(walk.name, tmp_path / folder, end_day=END_DAY, seed=seed, events_per_day=6, with_truth=False)
        trees.append(tree_bytes(tmp_path / folder))
    assert trees[0] == trees[1]
    assert trees[0] != trees[2]


@dataclass
class LoadedWarehouse:
    """What a loader following Pendo's documented load rules holds after replaying the exports."""

    allevents: dict[date, set[str]] = field(default_factory=dict)
    allevents_timestamps: dict[date, dict[str, datetime]] = field(default_factory=dict)
    matched: dict[str, dict[date, dict[str, list[dict]]]] = field(
        default_factory=lambda: {table: defaultdict(dict) for table in MATCHED_TABLES.values()})
    definitions: dict[str, dict[str, dict]] = field(
        default_factory=lambda: {table: {} for table, _ in DEFINITION_KEYS.values()})

    def matched_pairs(self, table: str, day: date) -> set[tuple[str, str]]:
        return {(row["matchableId"], row["eventId"])
                for rows in self.matched[table].get(day, {}).values() for row in rows}


def replay(manifest_path: Path, entries: list[dict], refused: set[tuple[int, date]] = frozenset()
           ) -> LoadedWarehouse:
    """A period with allEvents replaces the whole day (a full period lists only matchables that matched);
    a period without replaces the matchables it lists. `refused`: (counter, day) periods a loader rejects
    because a listed file is missing."""
    warehouse = LoadedWarehouse()
    for entry in sorted(entries, key=lambda entry: entry["counter"]):
        folder = folder_of(manifest_path, entry)
        for key, (table, id_field) in DEFINITION_KEYS.items():
            if key in entry and entry["exportType"] != ["Retroactive"]:
                warehouse.definitions[table] = {}
            for name in entry.get(key, []):
                warehouse.definitions[table].update((row[id_field], row) for row in read_rows(folder / name))
        for period in entry["timeDependent"]:
            day = period_day(period)
            if (entry["counter"], day) in refused:
                continue
            if "allEvents" in period:
                rows = rows_of(folder, period["allEvents"]["files"])
                warehouse.allevents[day] = {row["eventId"] for row in rows}
                warehouse.allevents_timestamps[day] = {row["eventId"]: row["browserTimestamp"] for row in rows}
                for matched in warehouse.matched.values():
                    matched[day] = {}
            for matched in period.get("matchedEvents", []):
                object_type, matchable_id = matched["id"].split("/", 1)
                rows = rows_of(folder, matched["files"])
                warehouse.matched[MATCHED_TABLES[object_type]][day][matchable_id] = rows
    return warehouse


def assert_rows_carry_the_truths_instants(warehouse: LoadedWarehouse, truth: Truth) -> None:
    """Every row's browserTimestamp is its event's; every matched row's lastUpdatedAt its matchable's of that day."""
    for day, instants in warehouse.allevents_timestamps.items():
        assert instants == {event_id: truth.browser_timestamps[day][event_id] for event_id in instants}, day
    for days in warehouse.matched.values():
        for day, by_matchable in days.items():
            for matchable_id, rows in by_matchable.items():
                for row in rows:
                    assert row["browserTimestamp"] == truth.browser_timestamps[day][row["eventId"]], day
                    assert row["lastUpdatedAt"] == truth.matched_updated_at[day][matchable_id], (day, matchable_id)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):
    """The bucket of a scenario on its last day, generated once per module."""
    cache: dict[str, GeneratedExports] = {}

    def generated(name: str) -> GeneratedExports:
        if name not in cache:
            cache[name] = generate(name, tmp_path_factory.mktemp(name), end_day=END_DAY)
        return cache[name]
    return generated


def only_app(generated: GeneratedExports) -> GeneratedApp:
    (app,) = generated.apps
    return app


def entries_of(app: GeneratedApp) -> list[dict]:
    return manifest_of(app.manifest_path)["exports"]


def allevents_rows(app: GeneratedApp) -> list[dict]:
    return [row for entry in entries_of(app) for period in entry["timeDependent"] if "allEvents" in period
            for row in rows_of(folder_of(app.manifest_path, entry), period["allEvents"]["files"])]


def test_first_export_of_small_is_a_one_time_backfill_in_per_day_folders(tree) -> None:
    backfill = entries_of(only_app(tree("small")))[0]
    days = [period_day(period) for period in backfill["timeDependent"]]
    assert backfill["exportType"] is None and len(days) == 3
    assert days == sorted(days) and max(days) < datetime.fromisoformat(backfill["timestamp"]).date()
    for period, day in zip(backfill["timeDependent"], days):
        assert all(name.startswith(f"{day.isoformat()}/") for name in period["allEvents"]["files"])


def test_growing_as_of_publishes_a_prefix_and_ends_with_the_same_bytes(tree, tmp_path: Path) -> None:
    small = tree("small")
    final_entries = entries_of(only_app(small))
    first_day = day_of(SCENARIOS["small"], 1)
    for offset in range(SCENARIOS["small"].export_days):
        as_of = first_day + timedelta(days=offset)
        result = generate("small", tmp_path, end_day=END_DAY, as_of=as_of)
        entries = entries_of(only_app(result))
        assert entries == final_entries[:len(entries)]
        assert datetime.fromisoformat(entries[-1]["timestamp"]).date() == as_of
    assert tree_bytes(tmp_path) == tree_bytes(small.out_dir)


def test_as_of_outside_the_simulated_days_and_unknown_scenarios_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate("small", tmp_path, end_day=END_DAY, as_of=END_DAY + timedelta(days=1))
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("no-such-scenario", tmp_path, end_day=END_DAY)


def test_truth_in_the_middle_of_a_scenario_is_what_its_exports_so_far_mean(tmp_path: Path) -> None:
    """Right after small's retroactive export, and in definition-lifecycle's stale window before one."""
    for name, day_number in (("small", 8), ("definition-lifecycle", 5)):
        as_of = day_of(SCENARIOS[name], day_number)
        app = only_app(generate(name, tmp_path / name, end_day=END_DAY, as_of=as_of))
        warehouse = replay(app.manifest_path, entries_of(app))
        assert warehouse.allevents == app.truth.allevents
        for table, days in app.truth.matched.items():
            assert {day: warehouse.matched_pairs(table, day) for day in days} == days


@pytest.mark.parametrize("name", ["small", "definition-lifecycle"])
def test_seed_003_queries_find_both_stale_and_valid_feature_rows(tree, name: str) -> None:
    app = only_app(tree(name))
    warehouse = replay(app.manifest_path, entries_of(app))
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


@pytest.mark.parametrize("name", ["small", "retroactive-separate"])
def test_retroactive_export_reexports_lifetime_with_deletes_and_partial_definitions(tree, name: str) -> None:
    app = only_app(tree(name))
    entries = entries_of(app)
    (retro,) = [entry for entry in entries if entry["exportType"] == ["Retroactive"]]
    earlier_days = {period_day(period) for entry in entries if entry["counter"] < retro["counter"]
                    for period in entry["timeDependent"]}
    assert {period_day(period) for period in retro["timeDependent"]} == earlier_days
    assert all("allEvents" not in period for period in retro["timeDependent"])
    slices = [matched for period in retro["timeDependent"] for matched in period["matchedEvents"]]
    assert {matched["type"] for matched in slices} == {"Page", "Feature"}
    assert any(matched["files"] == [] and matched["eventCount"] == 0 for matched in slices)
    assert any(matched["eventCount"] > 0 for matched in slices)
    assert "guideDefinitionsFile" not in retro and "trackTypeDefinitionsFile" not in retro
    changed = rows_of(folder_of(app.manifest_path, retro), retro["featureDefinitionsFile"])
    assert len(changed) == 1
    assert changed[0]["rulesUpdatedAt"] <= datetime.fromisoformat(retro["timestamp"])


def test_folded_retroactive_periods_follow_the_full_ones_of_a_recurring_export(tree) -> None:
    app = only_app(tree("retroactive-folded"))
    assert all(entry["exportType"] is None for entry in entries_of(app))
    (folded,) = [entry for entry in entries_of(app)
                 if any("allEvents" not in period for period in entry["timeDependent"])]
    full = [period_day(period) for period in folded["timeDependent"] if "allEvents" in period]
    rematched = [period_day(period) for period in folded["timeDependent"] if "allEvents" not in period]
    assert folded["timeDependent"][:len(full)] == [p for p in folded["timeDependent"] if "allEvents" in p]
    assert set(full) < set(rematched) and len(rematched) > 5
    names = [name for period in folded["timeDependent"] if "allEvents" not in period
             for matched in period["matchedEvents"] for name in matched["files"]]
    assert names and all(name.split("/")[1] == "retroactive" for name in names)
    assert "guideDefinitionsFile" in folded, "a recurring export carries every definition"


def test_finalized_day_adds_late_events_and_changes_matches(tree) -> None:
    app = only_app(tree("recurring"))
    versions: dict[date, list[tuple[set[str], dict[str, set[str]]]]] = defaultdict(list)
    for entry in entries_of(app):
        folder = folder_of(app.manifest_path, entry)
        for period in entry["timeDependent"]:
            all_ids = {row["eventId"] for row in rows_of(folder, period["allEvents"]["files"])}
            matched = {matched["id"]: {row["eventId"] for row in rows_of(folder, matched["files"])}
                       for matched in period["matchedEvents"]}
            versions[period_day(period)].append((all_ids, matched))
    finalized = {day: pair for day, pair in versions.items() if len(pair) == 2}
    assert len(finalized) >= 5
    late_events, added, withdrawn = 0, 0, 0
    for (early_all, early_matched), (final_all, final_matched) in finalized.values():
        assert early_all < final_all
        late_events += len(final_all - early_all)
        for object_id in early_matched.keys() | final_matched.keys():
            early, final = early_matched.get(object_id, set()), final_matched.get(object_id, set())
            added += len((final - early) & early_all)
            withdrawn += len(early - final)
    assert late_events > 0 and added > 0 and withdrawn > 0


def test_multi_file_day_of_small_has_three_parts_one_empty(tree) -> None:
    app = only_app(tree("small"))
    split = [(entry, period["allEvents"]["files"]) for entry in entries_of(app)
             for period in entry["timeDependent"] if len(period.get("allEvents", {}).get("files", [])) > 1]
    assert split
    for entry, files in split:
        assert [name.rsplit("/", 1)[-1] for name in files] == ["allevents-000.avro", "allevents-001.avro",
                                                               "allevents-002.avro"]
        assert 0 in [len(read_rows(folder_of(app.manifest_path, entry) / name)) for name in files]


def test_multi_file_parts_end_at_the_row_or_the_size_limit(tree) -> None:
    app = only_app(tree("multi-file"))
    shapes = SCENARIOS["multi-file"].files
    parts_by_rows, parts_by_size, empty_parts, split_matched = 0, 0, 0, 0
    for entry in entries_of(app):
        folder = folder_of(app.manifest_path, entry)
        for key in DEFINITION_KEYS:
            assert [name.rsplit("-", 1)[-1] for name in entry[key]] == ["000.avro", "001.avro"]
        for period in entry["timeDependent"]:
            matched_files = [matched["files"] for matched in period["matchedEvents"]]
            slices = [period["allEvents"]["files"], *matched_files]
            split_matched += sum(len(files) > 1 for files in slices[1:])
            for files in slices:
                assert len(files) == 1 or all(re.search(r"-\d{3}\.avro$", name) for name in files)
                for name in files[:-1]:
                    rows, size = len(read_rows(folder / name)), (folder / name).stat().st_size
                    assert rows <= shapes.max_rows_per_file
                    parts_by_rows += rows == shapes.max_rows_per_file
                    parts_by_size += 0 < rows < shapes.max_rows_per_file and size >= shapes.max_bytes_per_file
                    empty_parts += rows == 0
    assert parts_by_rows and parts_by_size and empty_parts and split_matched


def test_manifest_rotation_drops_exports_older_than_30_days_but_keeps_their_folders(tree) -> None:
    app = only_app(tree("manifest-rotation"))
    entries = entries_of(app)
    assert entries[0]["counter"] > 1
    folders = [path for path in app.manifest_path.parent.iterdir() if path.is_dir()]
    assert len(folders) == app.published_exports > len(entries) == app.manifest_exports
    assert all((folder / BOM_NAME).exists() for folder in folders)


def test_counters_skip_the_scenarios_gaps(tree) -> None:
    counters = [entry["counter"] for entry in entries_of(only_app(tree("counter-gaps")))]
    assert counters == [1, 2, 4, 7, 8, 9]


def test_an_uploading_export_has_files_but_no_bill_of_materials_and_no_entry(tree) -> None:
    app = only_app(tree("unlisted-folder"))
    (uploading,) = app.uploading_folders
    assert list(uploading.rglob("*.avro")) and not (uploading / BOM_NAME).exists()
    assert uploading.name not in {entry["rootUrl"].rsplit("/", 1)[-1] for entry in entries_of(app)}
    assert app.published_exports == SCENARIOS["unlisted-folder"].export_days - 1


def test_a_missing_file_is_listed_and_the_truth_keeps_the_earlier_copy_of_its_day(tree) -> None:
    app = only_app(tree("missing-file"))
    (missing,) = app.missing_files
    (entry,) = [entry for entry in entries_of(app) if entry["counter"] == missing.counter]
    (period,) = [period for period in entry["timeDependent"] if period_day(period) == missing.day]
    assert missing.relative_path in period["allEvents"]["files"] and not missing.path.exists()
    assert datetime.fromisoformat(entry["timestamp"]).date() == day_of(SCENARIOS["missing-file"], 11)
    earlier = [(e, p) for e in entries_of(app) if e["counter"] < missing.counter
               for p in e["timeDependent"] if period_day(p) == missing.day]
    (earlier_entry, earlier_period), = earlier
    kept = {row["eventId"] for row in rows_of(folder_of(app.manifest_path, earlier_entry),
                                              earlier_period["allEvents"]["files"])}
    assert app.truth.allevents[missing.day] == kept


def test_identifiers_scenario_has_every_awkward_id_and_text(tree) -> None:
    app = only_app(tree("identifiers"))
    rows = allevents_rows(app)
    for table in ("PAGES", "FEATURES"):
        ids = list(app.truth.definitions[table])
        assert len({object_id.lower() for object_id in ids}) < len(ids), f"{table} has case twins"
    visitors = {row["visitorId"] for row in rows}
    assert len({visitor.lower() for visitor in visitors}) < len(visitors)
    assert any(ANONYMOUS_VISITOR.match(visitor) for visitor in visitors)
    addresses = {row["remoteIp"] for row in rows if row["remoteIp"]}
    assert any(":" in address for address in addresses) and any("." in address for address in addresses)
    assert any(row["url"] and not row["url"].isascii() for row in rows)
    assert any(row["propertiesJson"] and not row["propertiesJson"].isascii() for row in rows)
    assert app.application_id == "-323232"


@pytest.mark.parametrize("name", ["small", "schema-drift"])
def test_files_drift_to_carry_new_nullable_fields(tree, name: str) -> None:
    app = only_app(tree(name))
    drift_day = day_of(SCENARIOS[name], SCENARIOS[name].schema_drift_day)
    seen = set()
    for entry in entries_of(app):
        folder = folder_of(app.manifest_path, entry)
        drifted = datetime.fromisoformat(entry["timestamp"]).date() >= drift_day
        seen.add(drifted)
        for name_of_file in listed_files({"timeDependent": entry["timeDependent"]}):
            assert ("sessionId" in writer_fields(folder / name_of_file)) == drifted
        for key in ("pageDefinitionsFile", "featureDefinitionsFile"):
            for name_of_file in entry.get(key, []):
                assert ("isCoreEvent" in writer_fields(folder / name_of_file)) == drifted
    assert seen == {False, True}


def test_small_mixes_codecs_and_has_pendo_shaped_events(tree) -> None:
    app = only_app(tree("small"))
    codecs, event_types, minutes_of_day, anonymous, non_ascii_urls = set(), set(), set(), 0, 0
    for path in app.manifest_path.parent.rglob("*.avro"):
        with path.open("rb") as avro_file:
            codecs.add(fastavro.reader(avro_file).codec)
    for row in allevents_rows(app):
        event_types.add(row["eventType"])
        assert row["periodId"] == row["browserTimestamp"].date()
        minutes_of_day.add(row["browserTimestamp"].hour * 60 + row["browserTimestamp"].minute)
        anonymous += row["visitorId"].startswith("_PENDO_T_") and row["accountId"] is None
        non_ascii_urls += bool(row["url"]) and not row["url"].isascii()
    assert codecs == {"null", "deflate", "snappy"}
    assert {"load", "click", "track", "identify", "guideSeen", "guideAdvanced", "pollResponse"} <= event_types
    assert min(minutes_of_day) == 0 and max(minutes_of_day) == 24 * 60 - 1
    assert anonymous > 0 and non_ascii_urls > 0


def test_utc_midnight_days_start_and_end_on_the_millisecond(tree) -> None:
    app = only_app(tree("utc-midnight"))
    edge = SCENARIOS["utc-midnight"].midnight
    by_day: dict[date, list[datetime]] = defaultdict(list)
    for row in allevents_rows(app):
        assert row["periodId"] == row["browserTimestamp"].date()
        by_day[row["periodId"]].append(row["browserTimestamp"])
    for day, moments in by_day.items():
        start = datetime.combine(day, datetime.min.time(), tzinfo=moments[0].tzinfo)
        offsets_ms = sorted((moment - start) // timedelta(milliseconds=1) for moment in moments)
        assert offsets_ms[0] == 0 and offsets_ms[-1] == 86_400_000 - 1
        assert sum(offset < edge.window_ms for offset in offsets_ms) >= edge.events_per_side
        assert sum(offset >= 86_400_000 - edge.window_ms for offset in offsets_ms) >= edge.events_per_side


def file_encoding(path: Path) -> tuple[str, str]:
    """(periodId's Avro type, the instants' logical type) from the file's header; a matched file's
    lastUpdatedAt must use the same unit as its browserTimestamp."""
    with path.open("rb") as avro_file:
        types = {item["name"]: item["type"] for item in fastavro.reader(avro_file).writer_schema["fields"]}
    period_id = types["periodId"]
    unit = types["browserTimestamp"]["logicalType"]
    if "lastUpdatedAt" in types:
        (updated,) = [branch for branch in types["lastUpdatedAt"] if branch != "null"]
        assert updated["logicalType"] == unit, path
    return period_id.get("logicalType", period_id["type"]) if isinstance(period_id, dict) else period_id, unit


def mixes_every_encoding_kind(encodings: set[tuple[str, str]]) -> bool:
    """Both timestamp units, and periodId both as an Avro date and as text or a plain number."""
    return ({unit for _, unit in encodings} == {"timestamp-millis", "timestamp-micros"}
            and "date" in {period_id for period_id, _ in encodings} and len({p for p, _ in encodings}) > 1)


def test_mixed_encodings_mix_within_one_day_and_table(tree) -> None:
    app = only_app(tree("mixed-encodings"))
    mixed_days, shapes = [], set()
    for entry in entries_of(app):
        folder = folder_of(app.manifest_path, entry)
        for period in entry["timeDependent"]:
            by_table: dict[str, set[tuple[str, str]]] = defaultdict(set)
            by_table["ALLEVENTS"] = {file_encoding(folder / name) for name in period["allEvents"]["files"]}
            for matched in period["matchedEvents"]:
                by_table[MATCHED_TABLES[matched["type"]]] |= {file_encoding(folder / name)
                                                              for name in matched["files"]}
            mixed = {table for table, encodings in by_table.items() if mixes_every_encoding_kind(encodings)}
            if "ALLEVENTS" in mixed and len(mixed) > 1:
                mixed_days.append(period_day(period))
            for name in listed_files({"timeDependent": [period]}):
                for row in read_rows(folder / name):
                    assert event_day(row["periodId"]) == row["browserTimestamp"].date() == period_day(period)
                    shapes.add(period_id_shape(row["periodId"]))
    assert mixed_days, "a day mixes every kind of encoding both in ALLEVENTS and in a matched table"
    assert shapes == {"date", "ISO text", "days since 1970", "yyyymmdd"}


def test_mixed_encodings_write_the_same_days_and_instants_as_a_single_encoding(
        tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = only_app(tree("mixed-encodings"))
    scenario = SCENARIOS["mixed-encodings"]
    monkeypatch.setitem(SCENARIOS, "mixed-encodings",
                        replace(scenario, files=replace(scenario.files, encodings=(EventEncoding(),))))
    single = only_app(generate("mixed-encodings", tmp_path, end_day=END_DAY))
    assert single.truth == mixed.truth
    entries = entries_of(mixed)
    assert [entry["timeDependent"] for entry in entries] == [entry["timeDependent"] for entry in entries_of(single)]
    for entry in entries:
        names = listed_files({"timeDependent": entry["timeDependent"]})
        encodings = set()
        for name in names:
            mixed_path = folder_of(mixed.manifest_path, entry) / name
            single_path = folder_of(single.manifest_path, entry) / name
            encodings.add(file_encoding(mixed_path))
            assert file_encoding(single_path) == ("date", "timestamp-millis")
            assert [with_event_day(row) for row in read_rows(mixed_path)] == read_rows(single_path), name
        assert len(encodings) == len(scenario.files.encodings)


def test_definition_lifecycle_renames_without_retroactive_export_then_rematches_a_day_after_the_rule_change(
        tree) -> None:
    app = only_app(tree("definition-lifecycle"))
    scenario = SCENARIOS["definition-lifecycle"]
    entries = entries_of(app)
    exported_on = {entry["counter"]: datetime.fromisoformat(entry["timestamp"]).date() for entry in entries}
    retro_days = [exported_on[entry["counter"]] for entry in entries
                  if entry["exportType"] == ["Retroactive"]]
    assert retro_days == [day_of(scenario, scenario.lifecycle.retroactive_day)]

    def definitions_on(day_number: int, key: str) -> dict[str, dict]:
        (entry,) = [entry for entry in entries if entry["exportType"] is None
                    and exported_on[entry["counter"]] == day_of(scenario, day_number)]
        id_field = DEFINITION_KEYS[key][1]
        return {row[id_field]: row for row in rows_of(folder_of(app.manifest_path, entry), entry[key])}

    renamed = {page_id for page_id, page in definitions_on(3, "pageDefinitionsFile").items()
               if page["name"] != definitions_on(2, "pageDefinitionsFile")[page_id]["name"]}
    assert len(renamed) == 1
    before_rule_change = definitions_on(4, "featureDefinitionsFile")
    retagged = {feature_id for feature_id, feature in definitions_on(5, "featureDefinitionsFile").items()
                if feature["rulesUpdatedAt"] != before_rule_change[feature_id]["rulesUpdatedAt"]}
    assert len(retagged) == 1
    before_deletion = definitions_on(7, "featureDefinitionsFile")
    deleted = {feature_id for feature_id, feature in definitions_on(8, "featureDefinitionsFile").items()
               if feature["deletedAt"] and not before_deletion[feature_id]["deletedAt"]}
    assert len(deleted) == 1


def test_test_export_is_one_day_typed_test(tree) -> None:
    entries = entries_of(only_app(tree("test-export")))
    assert entries[0]["exportType"] == ["Test"] and len(entries[0]["timeDependent"]) == 1
    assert all(entry["exportType"] is None for entry in entries[1:])


def test_one_time_export_spans_three_years(tree) -> None:
    first = entries_of(only_app(tree("one-time-3-years")))[0]
    days = [period_day(period) for period in first["timeDependent"]]
    assert first["exportType"] is None and len(days) == len(set(days)) == 1096
    assert days[-1] - days[0] == timedelta(days=1095)


def test_backfills_come_as_one_export_with_day_suffixes_or_as_sequential_chunks(tree) -> None:
    one = entries_of(only_app(tree("backfill-one-export")))[0]
    assert len(one["timeDependent"]) == 21
    for period in one["timeDependent"]:
        assert period["allEvents"]["files"] == [f"allevents_{period_day(period).isoformat()}.avro"]
    chunks = [entry for entry in entries_of(only_app(tree("backfill-sequential")))
              if len(entry["timeDependent"]) == 5]
    days = [period_day(period) for entry in chunks for period in entry["timeDependent"]]
    assert len(chunks) == 4 and days == sorted(days) and days[-1] - days[0] == timedelta(days=19)


def test_multi_tenant_bucket_has_an_app_folder_and_manifest_per_subscription_and_app(tree) -> None:
    generated = tree("multi-tenant")
    folders = {app.manifest_path.parent.relative_to(generated.out_dir).as_posix() for app in generated.apps}
    assert folders == {"datasync/5123456789012345/-323232", "datasync/5123456789012345/5629499534213120",
                       "datasync/6192449487634432/-323232"}


def test_visitor_and_account_exports_start_full_then_carry_daily_deltas(tree) -> None:
    generated = tree("visitors-accounts")
    scenario = SCENARIOS["visitors-accounts"]
    (subscription,) = generated.subscriptions
    kinds = ((subscription.visitor_manifest_path, subscription.visitor_truth, "visitors"),
             (subscription.account_manifest_path, subscription.account_truth, "accounts"))
    for manifest_path, truth, key in kinds:
        assert manifest_path.parent.name == key[:-1]
        entries = manifest_of(manifest_path)["exports"]
        assert len(entries) == scenario.export_days
        upserted: dict[str, dict] = {}
        delta_rows = 0
        for index, entry in enumerate(entries):
            folder = folder_of(manifest_path, entry)
            bom = json.loads((folder / BOM_NAME).read_text(encoding="utf-8"))
            assert list(bom) == [key, "metadataSchemaFile", "timestamp", "numberOfFiles", "subscription"]
            assert bom[key]["files"] == [f"{key}-{n:03d}.avro" for n in range(len(bom[key]["files"]))]
            fields = {row["avroFieldName"]: row for row in read_rows(folder / bom["metadataSchemaFile"])}
            rows = rows_of(folder, bom[key]["files"])
            assert all(len(read_rows(folder / name)) <= scenario.metadata_exports.rows_per_file
                       for name in bom[key]["files"])
            assert all(set(row) == {"id", *fields} for row in rows)
            if index == 0:
                assert len(rows) == len(truth.records)
            else:
                assert len(rows) < len(truth.records)
                delta_rows += len(rows)
            day_number = index + 1
            added = [name for name in fields if name.endswith(("renewal_date", "contract_start"))]
            assert bool(added) == (day_number >= scenario.metadata_exports.field_added_day)
            deleted = [row for row in fields.values() if row["isDeleted"]]
            assert bool(deleted) == (day_number >= scenario.metadata_exports.field_deleted_day)
            assert all(row[field["avroFieldName"]] is None for row in rows for field in deleted)
            upserted.update((row.pop("id"), row) for row in rows)
        assert delta_rows > 0
        assert upserted == truth.records
        assert fields == truth.fields


def test_bench_day_is_one_deflate_allevents_file_with_the_usual_schema(tree, tmp_path: Path) -> None:
    events = 20_000
    app = only_app(generate("bench-day", tmp_path, end_day=END_DAY, events_per_day=events, with_truth=False))
    (entry,) = entries_of(app)
    (period,) = entry["timeDependent"]
    (name,) = period["allEvents"]["files"]
    assert name == "allevents.avro" and period["allEvents"]["eventCount"] == events
    assert period["matchedEvents"] and app.truth.event_counts[("ALLEVENTS", period_day(period))] == events
    with (folder_of(app.manifest_path, entry) / name).open("rb") as avro_file:
        blocks = fastavro.block_reader(avro_file)
        assert blocks.codec == "deflate"
        fields = [item["name"] for item in blocks.writer_schema["fields"]]
        assert fields == [item["name"] for item in event_schema(False, False)["fields"]] and len(fields) >= 25
        raw_sizes = [len(block.bytes_.getvalue()) for block in blocks][:-1]
    assert all(64_000 <= size < 66_000 for size in raw_sizes)


@pytest.mark.slow  # generates two bench days under tracemalloc: 5 s
def test_generation_memory_does_not_grow_with_the_events_of_a_day(tmp_path: Path) -> None:
    peaks = []
    for events in (4_000, 16_000):
        tracemalloc.start()
        generate("bench-day", tmp_path / str(events), end_day=END_DAY, events_per_day=events,
                 with_truth=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.3


@pytest.mark.parametrize("change, problem", [
    ({"one_time_exports": (), "recurring_from": 2}, "day 1"),
    ({"sync_days": (40, 45)}, "rotated out"),
    ({"lifecycle": Lifecycle(rule_change_day=30, retroactive_folded=True)}, "folded"),
    ({"lifecycle": Lifecycle(retired_feature_day=8, deleted_feature_day=10)}, "finalized"),
])
def test_inconsistent_scenarios_are_refused(change: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        replace(SCENARIOS["demo"], **change)


def test_split_sink_names_a_single_part_plainly_and_numbers_parts_once_it_splits(tmp_path: Path) -> None:
    row_format = (PartFormat(fastavro.parse_schema({"type": "record", "name": "Row",
                                                   "fields": [{"name": "x", "type": "string"}]})),)
    folder = ExportFolder(tmp_path, (("null", 1),), block_bytes=100)
    single = SplitAvroSink(folder, "one", row_format, SplitLimits(max_rows=10, max_bytes=10**9))
    for index in range(10):
        single.write({"x": str(index)})
    assert [part.relative_path for part in single.close()] == ["one.avro"]
    by_size = SplitAvroSink(folder, "sized", row_format, SplitLimits(max_rows=None, max_bytes=600))
    for index in range(200):
        by_size.write({"x": "value-" * 3 + str(index)})
    parts = by_size.close()
    assert len(parts) > 2 and [part.relative_path for part in parts] == [
        f"sized-{index:03d}.avro" for index in range(len(parts))]
    assert sum(len(read_rows(tmp_path / part.relative_path)) for part in parts) == 200
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["one.avro", *(part.relative_path for part in parts)])


@pytest.mark.parametrize("destination, prefix", [
    ("s3", "s3://acme-pendo-exports/datasync/"),
    ("azure", "https://acmependoexports.blob.core.windows.net/acme-pendo-exports/datasync/"),
])
def test_root_urls_follow_the_destination(tmp_path: Path, destination: str, prefix: str) -> None:
    generated = generate("visitors-accounts", tmp_path, end_day=END_DAY, destination=destination,
                         with_truth=False)
    (subscription,) = generated.subscriptions
    for manifest_path in (only_app(generated).manifest_path, subscription.visitor_manifest_path):
        folder = manifest_path.parent.relative_to(tmp_path).as_posix()
        assert all(entry["rootUrl"].startswith(f"{prefix}{folder[len('datasync/'):]}/")
                   for entry in manifest_of(manifest_path)["exports"])


@settings(max_examples=3, deadline=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_gives_a_tree_that_replays_to_its_truth(
        tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    app = only_app(generate("small", tmp_path_factory.mktemp("seeded"), end_day=END_DAY, seed=seed))
    warehouse = replay(app.manifest_path, entries_of(app))
    assert warehouse.allevents == app.truth.allevents
    for table, days in app.truth.matched.items():
        assert {day: warehouse.matched_pairs(table, day) for day in days} == days


def test_cli_documents_every_option_and_scenario_and_writes_the_bucket(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    assert all(action.help for action in parser._actions)
    help_text = parser.format_help()
    assert all(f"  {name} " in help_text for name in SCENARIOS)
    args = parser.parse_args(["--out", str(tmp_path), "--scenario", "missing-file", "--end-day", "2024-04-15",
                              "--as-of", "2024-04-15", "--seed", "3", "--bucket", "other-bucket",
                              "--destination", "s3", "--events-per-day", "12"])
    assert run_generate(args) == 0
    manifest = tmp_path / "datasync" / "5123456789012345" / "-323232" / "exportmanifest.json"
    entries = manifest_of(manifest)["exports"]
    assert entries[-1]["rootUrl"].startswith("s3://other-bucket/")
    assert entries[-1]["timeDependent"][0]["allEvents"]["eventCount"] < 12
    output = capsys.readouterr().out
    assert "-323232" in output and "missing on purpose" in output
