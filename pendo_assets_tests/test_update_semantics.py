"""Pendo's update rules that the scenario runs in test_scenarios_end_to_end do not prove on their own.

Each test publishes generated exports, lets the real manifest sensor tick and runs what it requests
(or runs a partition as a UI backfill does), then compares the warehouse with the generator's truth.
The comparison here counts rows, so a row loaded twice is caught, and reads every definition field.
Each test asserts that its exports really hold the situation it is about; one test only guards that a
library scenario, loaded end to end there, keeps holding its situation.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import fastavro
import pytest

from pendo_assets.definitions import build_definitions
from pendo_assets.defs.assets import RELOAD_TAG, table_key
from pendo_assets.generator import SCENARIOS, GeneratedApp, generate
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.settings import Settings
from pendo_assets.sync import run_check_evaluations
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.sql import qualified, quote_ident
from pendo_assets_tests.e2e import (END_DAY, days_of, failure_messages, loaded_then_reexported, read_table,
                                    rows_of_day, same_rows, settings_in, snapshot, tick_and_run, warehouse_of)

FIRST_DAY = date(2022, 1, 1)
MATCHED_TABLE_OF_TYPE = {"Page": "MATCHEDPAGEEVENTS", "Feature": "MATCHEDFEATUREEVENTS",
                         "TrackType": "MATCHEDTRACKTYPEEVENTS"}
DEFINITION_ID_COLUMNS = {"PAGES": "pageId", "FEATURES": "featureId", "TRACKTYPES": "trackTypeId",
                         "GUIDES": "guideId"}
DEFINITION_FIELDS = ("name", "rulesUpdatedAt", "deletedAt", "softDeleteMethod")
DEFINITION_FILE_KEYS = {"PAGES": "pageDefinitionsFile", "FEATURES": "featureDefinitionsFile"}
NEW_FIELD = "sessionId"


def day_of(name: str, day_number: int) -> date:
    return END_DAY - timedelta(days=SCENARIOS[name].export_days - day_number)


def location(app: GeneratedApp) -> AppLocation:
    return AppLocation(app.subscription_id, app.application_id)


def manifest_entries(app: GeneratedApp) -> list[dict]:
    return json.loads(app.manifest_path.read_text(encoding="utf-8"))["exports"]


def rewrite_manifest(app: GeneratedApp, entries: list[dict]) -> None:
    manifest = json.loads(app.manifest_path.read_text(encoding="utf-8"))
    app.manifest_path.write_text(json.dumps({**manifest, "exports": entries}), encoding="utf-8")


def folder_of(app: GeneratedApp, entry: dict) -> Path:
    return app.manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[-1]


def day_of_period(period: dict) -> date:
    return date.fromisoformat(period["periodId"][:10])


def avro_rows(folder: Path, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        with (folder / name).open("rb") as avro_file:
            rows += list(fastavro.reader(avro_file))
    return rows


def sync(settings: Settings, instance: dg.DagsterInstance, cursors: dict[str, str | None]):
    """One sensor tick and its runs, every one of which must succeed."""
    results = tick_and_run(settings, instance, cursors)
    assert all(result.success for _, result in results), failure_messages(results)
    return results


def requested_days(results) -> set[date]:
    return {date.fromisoformat(day) for request, _ in results for day in days_of(request)}


def run_partition(settings: Settings, instance: dg.DagsterInstance, app: GeneratedApp, day: date,
                  tags: dict[str, str] | None = None):
    """What a UI backfill of one day of the app's event tables runs, after a code-location reload."""
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    tables = [table_key(location(app), table.value) for table in EventTable]
    return job.execute_in_process(instance=instance, partition_key=day.isoformat(), asset_selection=tables,
                                  tags=tags, raise_on_error=False)


def truth_rows(app: GeneratedApp) -> dict[str, Counter]:
    rows = {"ALLEVENTS": Counter((day, event_id) for day, ids in app.truth.allevents.items()
                                 for event_id in ids)}
    for table, days in app.truth.matched.items():
        rows[table] = Counter((day, *pair) for day, pairs in days.items() for pair in pairs)
    return rows


def loaded_rows(settings: Settings, app: GeneratedApp) -> dict[str, Counter]:
    warehouse = warehouse_of(settings)
    rows = {"ALLEVENTS": Counter(read_table(warehouse, location(app), "ALLEVENTS", ["periodId", "eventId"]))}
    for table in MATCHED_TABLE_OF_TYPE.values():
        rows[table] = Counter(read_table(warehouse, location(app), table, ["periodId", "matchableId", "eventId"]))
    return rows


def assert_events_equal_truth(settings: Settings, app: GeneratedApp, days: set[date] | None = None) -> None:
    """Every event table row for row, duplicates included, on `days` (default: all)."""
    loaded, expected = loaded_rows(settings, app), truth_rows(app)
    for table in expected:
        have = Counter({row: n for row, n in loaded[table].items() if days is None or row[0] in days})
        want = Counter({row: n for row, n in expected[table].items() if days is None or row[0] in days})
        assert have == want, (f"{table}: unexpected {sorted(have - want)[:3]}, "
                              f"missing {sorted(want - have)[:3]}")


def as_stored(value: object) -> object:
    """Timestamps are stored as naive UTC TIMESTAMPs."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def assert_definitions_equal_truth(settings: Settings, app: GeneratedApp) -> None:
    """Every definition's name, rulesUpdatedAt, deletedAt and softDeleteMethod, once per id."""
    with DuckDBWarehouse(settings.warehouse).session() as session:
        for table, by_id in app.truth.definitions.items():
            columns = session.table_columns(location(app).schema_name, table) or {}
            fields = [field for field in DEFINITION_FIELDS if field in columns]
            assert all(row[field] is None for row in by_id.values() for field in DEFINITION_FIELDS
                       if field not in fields), f"{table} lacks a column the truth fills"
            selected = ", ".join(quote_ident(column) for column in (DEFINITION_ID_COLUMNS[table], *fields))
            rows = session.query(f"SELECT {selected} FROM {qualified(location(app).schema_name, table)}")
            loaded = {row[0]: dict(zip(fields, row[1:])) for row in rows}
            assert len(loaded) == len(rows), f"{table} holds an id twice"
            assert loaded == {object_id: {field: as_stored(row[field]) for field in fields}
                              for object_id, row in by_id.items()}, table


def retroactive_entry(app: GeneratedApp) -> dict:
    (entry,) = [entry for entry in manifest_entries(app) if entry["exportType"] == ["Retroactive"]]
    return entry


def test_retroactive_separate_finalizes_days_after_its_retroactive_export_re_tagged_them(
        tmp_path: Path) -> None:
    """§4.3: a day's matched rows are those of its latest full copy, then of each LATER retroactive block.

    retroactive-separate re-tags every day so far, some still unfinalized; their finalized copies arrive
    after it with late events and changed matches, and must win over its blocks, while days finalized
    before it keep its re-tagging. test_scenarios_end_to_end[retroactive-separate] loads the scenario
    sync by sync through the sensor and compares with truth; this keeps the scenario holding both orders
    with contents that tell them apart.
    """
    generated = generate("retroactive-separate", tmp_path, end_day=END_DAY)
    superseded, kept = retroactive_blocks_against_full_copies(generated.apps[0])
    assert superseded, "no re-tagged day is finalized after the retroactive export with other matches"
    assert kept, "no day finalized before the retroactive export is changed by it"


def retroactive_blocks_against_full_copies(app: GeneratedApp) -> tuple[list, list]:
    """Retroactive slices that a later full copy of their day contradicts, and those that change the
    earlier full copy of their day, as (day, matchable id)."""
    entries, retro = manifest_entries(app), retroactive_entry(app)
    superseded, kept = [], []
    for period in retro["timeDependent"]:
        day = day_of_period(period)
        copies = [entry for entry in entries for other in entry["timeDependent"]
                  if day_of_period(other) == day and "allEvents" in other]
        for matched in period["matchedEvents"]:
            object_id = matched["id"].split("/", 1)[1]
            retagged = {row["eventId"] for row in avro_rows(folder_of(app, retro), matched["files"])}
            final = {event_id for matchable_id, event_id in
                     app.truth.matched[MATCHED_TABLE_OF_TYPE[matched["type"]]].get(day, set())
                     if matchable_id == object_id}
            latest_copy = copies[-1]
            if latest_copy["counter"] > retro["counter"] and retagged != final:
                superseded.append((day, object_id))
            elif (latest_copy["counter"] < retro["counter"]
                  and retagged != full_copy_matches(app, latest_copy, day, matched["id"])):
                kept.append((day, object_id))
    return superseded, kept


def full_copy_matches(app: GeneratedApp, entry: dict, day: date, matched_id: str) -> set[str]:
    (period,) = [p for p in entry["timeDependent"] if day_of_period(p) == day and "allEvents" in p]
    files = [name for matched in period["matchedEvents"] if matched["id"] == matched_id
             for name in matched["files"]]
    return {row["eventId"] for row in avro_rows(folder_of(app, entry), files)}


# Tests marked slow sync for 3-9 s each; the quicker ones stay in `make test-fast`.
@pytest.mark.slow
def test_partial_definition_files_are_upserted_and_a_full_snapshot_replaces_them(tmp_path: Path) -> None:
    """§4.4: a retroactive export carries only the definitions it changed; they are upserted by id and
    the others stay. The next full export's definitions are the complete set again.

    In `small` the rule change falls between the day's recurring export and the retroactive one, so
    right after it only the retroactive files hold the new rulesUpdatedAt.
    """
    name = "small"
    settings = settings_in(tmp_path, FIRST_DAY)
    with dg.DagsterInstance.ephemeral() as instance:
        cursors: dict[str, str | None] = {}
        generated = generate(name, settings.exports, end_day=END_DAY,
                             as_of=day_of(name, SCENARIOS[name].lifecycle.retroactive_day))
        app = generated.apps[0]
        assert_retroactive_definitions_are_partial_and_new(app)
        sync(settings, instance, cursors)
        assert_definitions_equal_truth(settings, app)

        generated = generate(name, settings.exports, end_day=END_DAY)
        assert manifest_entries(generated.apps[0])[-1]["exportType"] is None
        sync(settings, instance, cursors)
        assert_definitions_equal_truth(settings, generated.apps[0])


def assert_retroactive_definitions_are_partial_and_new(app: GeneratedApp) -> None:
    """The latest export is retroactive, and its definition files hold fewer ids than the snapshot
    before it, each with a newer rulesUpdatedAt."""
    entries = manifest_entries(app)
    retro = retroactive_entry(app)
    assert entries[-1]["counter"] == retro["counter"], "the retroactive export must be the latest"
    snapshot_entry = [entry for entry in entries if entry["exportType"] is None][-1]
    for table, key in DEFINITION_FILE_KEYS.items():
        changed = avro_rows(folder_of(app, retro), retro[key])
        before = {row[DEFINITION_ID_COLUMNS[table]]: row
                  for row in avro_rows(folder_of(app, snapshot_entry), snapshot_entry[key])}
        assert 0 < len(changed) < len(before) == len(app.truth.definitions[table])
        assert all(row["rulesUpdatedAt"] > before[row[DEFINITION_ID_COLUMNS[table]]]["rulesUpdatedAt"]
                   for row in changed)


@pytest.mark.slow
def test_the_same_day_twice_in_one_export_loads_each_row_once(tmp_path: Path) -> None:
    """§4.3 rule 7: a retroactive block folded into a daily export that also carries the day in full.
    The blocks apply in order and no row is loaded twice."""
    name = "retroactive-folded"
    settings = settings_in(tmp_path, FIRST_DAY)
    generated = generate(name, settings.exports, end_day=END_DAY,
                         as_of=day_of(name, SCENARIOS[name].lifecycle.retroactive_day))
    app = generated.apps[0]
    (folded,) = [entry for entry in manifest_entries(app)
                 if any("allEvents" not in period for period in entry["timeDependent"])]
    full_days = {day_of_period(p) for p in folded["timeDependent"] if "allEvents" in p}
    twice = [p for p in folded["timeDependent"] if "allEvents" not in p and day_of_period(p) in full_days
             and any(matched["files"] for matched in p["matchedEvents"])]
    assert twice, "the folded export must carry a day in full and again with re-tagged matches"
    with dg.DagsterInstance.ephemeral() as instance:
        sync(settings, instance, {})
    assert_events_equal_truth(settings, app)


@pytest.mark.slow
def test_a_manifest_shrunk_to_one_retroactive_export_is_planned_from_the_catalog(tmp_path: Path) -> None:
    """§4.8, §7 #17: the manifest only ever lists a window of exports and may shrink. A retroactive
    export listed alone re-tags days whose full copies are no longer listed, so the loader plans those
    days from the exports it has cataloged. Entries that are listed again are not loaded again."""
    name = "retroactive-separate"
    settings = settings_in(tmp_path, FIRST_DAY)
    retroactive_day = SCENARIOS[name].lifecycle.retroactive_day
    generated = generate(name, settings.exports, end_day=END_DAY, as_of=day_of(name, retroactive_day))
    app = generated.apps[0]
    entries, retro = manifest_entries(app), retroactive_entry(app)
    with dg.DagsterInstance.ephemeral() as instance:
        cursors: dict[str, str | None] = {}
        rewrite_manifest(app, [entry for entry in entries if entry["counter"] != retro["counter"]])
        sync(settings, instance, cursors)
        rewrite_manifest(app, [retro])
        results = sync(settings, instance, cursors)
        assert requested_days(results) == {day_of_period(period) for period in retro["timeDependent"]}
        assert_events_equal_truth(settings, app)
        assert_definitions_equal_truth(settings, app)

        generated = generate(name, settings.exports, end_day=END_DAY,
                             as_of=day_of(name, retroactive_day + 2))
        results = sync(settings, instance, cursors)
        newer = [entry for entry in manifest_entries(generated.apps[0])
                 if entry["counter"] > retro["counter"]]
        assert requested_days(results) == {day_of_period(p) for entry in newer
                                           for p in entry["timeDependent"]}
        assert_events_equal_truth(settings, generated.apps[0])


def test_a_counter_that_now_names_another_folder_is_loaded_from_that_folder(tmp_path: Path) -> None:
    """§7 #6: counters may be reset and exports redelivered, so an entry is its counter and its folder.
    Here every export is redone into new folders with other contents under the same counters (another
    seed of the same scenario); the next sync must load the days and definitions from the new folders."""
    name = "recurring"
    settings = settings_in(tmp_path, FIRST_DAY)
    as_of = day_of(name, 3)
    with dg.DagsterInstance.ephemeral() as instance:
        cursors: dict[str, str | None] = {}
        first = generate(name, settings.exports, end_day=END_DAY, as_of=as_of, seed=7)
        before = manifest_entries(first.apps[0])
        sync(settings, instance, cursors)
        redone = generate(name, settings.exports, end_day=END_DAY, as_of=as_of, seed=8)
        after = manifest_entries(redone.apps[0])
        assert [e["counter"] for e in before] == [e["counter"] for e in after]
        assert all(old["rootUrl"] != new["rootUrl"] for old, new in zip(before, after))
        results = sync(settings, instance, cursors)
    assert requested_days(results) == {day_of_period(p) for entry in after
                                       for p in entry["timeDependent"]}
    assert_events_equal_truth(settings, redone.apps[0])
    assert_definitions_equal_truth(settings, redone.apps[0])


def test_a_ui_backfill_rebuilds_a_day_from_the_catalog_after_its_exports_left_the_manifest(
        tmp_path: Path) -> None:
    """§4.8: the manifest lists 30 days, so a day's every copy eventually leaves it. After the day's rows
    were damaged behind the ledger's back, a plain backfill leaves the day (the ledger says it is built from
    its exports) and its count check catches the damage; a backfill tagged pendo/reload=true rebuilds it
    from the export catalog, exactly as its exports mean."""
    name = "manifest-rotation"
    settings = settings_in(tmp_path, FIRST_DAY)
    oldest = day_of(name, 0)
    with dg.DagsterInstance.ephemeral() as instance:
        generated = generate(name, settings.exports, end_day=END_DAY, as_of=day_of(name, 10))
        assert run_partition(settings, instance, generated.apps[0], oldest).success
        assert_events_equal_truth(settings, generated.apps[0], days={oldest})

        generated = generate(name, settings.exports, end_day=END_DAY)
        app = generated.apps[0]
        assert oldest in app.truth.allevents
        assert all(day_of_period(p) != oldest for entry in manifest_entries(app)
                   for p in entry["timeDependent"])
        damage_day(settings, app, oldest)
        with pytest.raises(AssertionError):
            assert_events_equal_truth(settings, app, days={oldest})

        checked = run_partition(settings, instance, app, oldest)
        failed_checks = [e.asset_key.path[-1] for e in run_check_evaluations(instance, checked.run_id)
                         if not e.passed]
        reloaded = run_partition(settings, instance, app, oldest, tags={RELOAD_TAG: "true"})
    assert not checked.success and "allevents" in failed_checks
    assert reloaded.success
    assert_events_equal_truth(settings, app, days={oldest})


def damage_day(settings: Settings, app: GeneratedApp, day: date) -> None:
    """Lose half of the day's events and matches, and add an event that was never exported."""
    schema = location(app).schema_name
    with DuckDBWarehouse(settings.warehouse).session() as session:
        for table in ("ALLEVENTS", *MATCHED_TABLE_OF_TYPE.values()):
            if session.table_columns(schema, table) is None:
                continue
            session.execute(f'DELETE FROM {qualified(schema, table)} '
                            'WHERE "periodId" = ? AND hash("eventId") % 2 = 0', [day])
        allevents = qualified(schema, "ALLEVENTS")
        session.execute(f"""INSERT INTO {allevents} SELECT * REPLACE ('never-exported' AS "eventId") """
                        f'FROM {allevents} WHERE "periodId" = ? LIMIT 1', [day])


@pytest.mark.slow
def test_an_app_that_appears_later_is_loaded_and_the_apps_already_there_are_left_alone(
        tmp_path: Path) -> None:
    """§1.3: apps and subscriptions appear under datasync/ over time. The next code-location load finds a
    new app folder and its first sync loads it whole; nothing is requested for the apps already loaded."""
    staging = tmp_path / "staging"
    settings = settings_in(tmp_path, FIRST_DAY)
    generated = generate("multi-tenant", staging, end_day=END_DAY)
    first, *later = generated.apps

    def publish(app: GeneratedApp) -> None:
        folder = app.manifest_path.parent.relative_to(staging)
        shutil.copytree(staging / folder, Path(settings.exports) / folder)

    with dg.DagsterInstance.ephemeral() as instance:
        cursors: dict[str, str | None] = {}
        publish(first)
        sync(settings, instance, cursors)
        first_tables = snapshot(settings, location(first))
        for app in later:
            publish(app)
        results = sync(settings, instance, cursors)
    assert {(request.tags["pendo/subscription_id"], request.tags["pendo/application_id"])
            for request, _ in results} == {(app.subscription_id, app.application_id) for app in later}
    assert snapshot(settings, location(first)) == first_tables
    for app in generated.apps:
        assert_events_equal_truth(settings, app)
        assert_definitions_equal_truth(settings, app)


@pytest.mark.slow
def test_a_field_that_appears_later_adds_a_column_that_older_rows_read_as_null(tmp_path: Path) -> None:
    """§3.0, §7.1: a nullable field appearing mid-series adds a column. Rows from earlier files read NULL
    in it, rows from later files carry their values, and an earlier file still loads once it exists."""
    name = "schema-drift"
    settings = settings_in(tmp_path, FIRST_DAY)
    with dg.DagsterInstance.ephemeral() as instance:
        cursors: dict[str, str | None] = {}
        for as_of in (day_of(name, day) for day in SCENARIOS[name].checkpoints):
            generated = generate(name, settings.exports, end_day=END_DAY, as_of=as_of)
            sync(settings, instance, cursors)
        app = generated.apps[0]
        expected = new_field_values_in_files(app)
        without = {day for day, rows in expected.items() if all(value is None for *_, value in rows)}
        assert without and all(value is not None for day, rows in expected.items() if day not in without
                               for *_, value in rows), "the scenario must load days from before and after"
        assert new_field_values_loaded(settings, app) == expected

        assert run_partition(settings, instance, app, min(without)).success
    assert new_field_values_loaded(settings, app) == expected
    assert_events_equal_truth(settings, app)


def new_field_values_in_files(app: GeneratedApp) -> dict[date, Counter]:
    """Per day, (table, matchable id, event id, new field's value) of the one export carrying the day."""
    values: dict[date, Counter] = {}
    for entry in manifest_entries(app):
        for period in entry["timeDependent"]:
            day = day_of_period(period)
            assert day not in values, "each day of the scenario is exported once"
            values[day] = Counter(("ALLEVENTS", None, row["eventId"], row.get(NEW_FIELD))
                                  for row in avro_rows(folder_of(app, entry), period["allEvents"]["files"]))
            for matched in period["matchedEvents"]:
                table = MATCHED_TABLE_OF_TYPE[matched["type"]]
                values[day].update((table, row["matchableId"], row["eventId"], row.get(NEW_FIELD))
                                   for row in avro_rows(folder_of(app, entry), matched["files"]))
    return values


def new_field_values_loaded(settings: Settings, app: GeneratedApp) -> dict[date, Counter]:
    warehouse = warehouse_of(settings)
    values: dict[date, Counter] = {}
    for day, event_id, value in read_table(warehouse, location(app), "ALLEVENTS", ["periodId", "eventId", NEW_FIELD]):
        values.setdefault(day, Counter())[("ALLEVENTS", None, event_id, value)] += 1
    for table in MATCHED_TABLE_OF_TYPE.values():
        for day, matchable_id, event_id, value in read_table(
                warehouse, location(app), table, ["periodId", "matchableId", "eventId", NEW_FIELD]):
            values.setdefault(day, Counter())[(table, matchable_id, event_id, value)] += 1
    return values


@pytest.mark.slow
def test_a_field_whose_type_changes_fails_the_day_naming_file_and_field(tmp_path: Path) -> None:
    """§3.0, §7 #1: a field whose type changes incompatibly is never coerced: the run fails naming the file
    and the field, and the day keeps the rows it had. Here a re-export writes visitorId as a long; the
    file keeps its row count, so the bill of materials still agrees and only the type is wrong."""
    settings = settings_in(tmp_path, first_day=date(2024, 1, 1))
    with dg.DagsterInstance.ephemeral() as instance:
        app, manifest_path, entry, period = loaded_then_reexported(settings, instance)
        day = period["periodId"][:10]
        folder = manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[-1]
        name = next(name for name in period["allEvents"]["files"] if avro_rows(folder, [name]))
        write_visitor_ids_as_longs(folder / name)
        day_rows_before = rows_of_day(snapshot(settings, app), day)
        assert any(day_rows_before.values())

        results = tick_and_run(settings, instance, {})

    failed = [request for request, result in results if not result.success]
    assert len(failed) == 1 and day in days_of(failed[0])
    message = " ".join(failure_messages(results))
    assert name in message and "field 'visitorId'" in message, message
    assert same_rows(rows_of_day(snapshot(settings, app), day), day_rows_before)


def write_visitor_ids_as_longs(path: Path) -> None:
    with path.open("rb") as avro_file:
        reader = fastavro.reader(avro_file)
        schema, records = reader.writer_schema, list(reader)
    for field in schema["fields"]:
        if field["name"] == "visitorId":
            field["type"] = "long"
    with path.open("wb") as avro_file:
        fastavro.writer(avro_file, schema, [{**record, "visitorId": number}
                                            for number, record in enumerate(records)])
