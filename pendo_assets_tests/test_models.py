import json
from datetime import date

import pytest

from pendo_assets.pendo.models import ManifestError, parse_manifest
from pendo_assets.pendo.tables import DefinitionTable, MatchableType

SEED_001_ENTRY = {
    "timestamp": "2023-02-16T20:21:11Z", "numberOfFiles": 65,
    "application": {"displayName": "Acme CRM", "id": "-323232"},
    "subscription": {"displayName": "(Demo) Pendo Experience", "id": "6591622502678528"},
    "pageDefinitionsFile": ["allpages.avro"], "featureDefinitionsFile": ["allfeatures.avro"],
    "trackTypeDefinitionsFile": ["alltracktypes.avro"], "guideDefinitionsFile": ["allguides.avro"],
    "timeDependent": [{
        "periodId": "2023-02-22T00:00:00Z",
        "allEvents": {"eventCount": 9515, "files": ["allevents.avro"]},
        "matchedEvents": [{"eventCount": 48314, "files": ["matchedEvents/Page/OMZ5WpI3HXIhNIIf8Sl_5zJF688.avro"],
                           "id": "Page/OMZ5WpI3HXIhNIIf8Sl_5zJF688", "type": "Page"}],
    }],
    "exportType": None, "counter": 1, "finishTime": "2023-03-03T14:10:15.311651Z", "storageSize": 12130815,
    "rootUrl": "gs://pendo-data/datasync/6591622502678528/-323232/0f39bdf6-09c2-4e4d-6d4f-b02c961d8aaf",
    "someFutureKey": {"ignored": True},
}


def manifest(*entries, **extra) -> bytes:
    return json.dumps({"exports": list(entries), "generatedTime": "2023-03-05T04:17:59Z", **extra}).encode()


def test_every_documented_field_of_the_seed_example_is_parsed():
    parsed = parse_manifest(manifest(SEED_001_ENTRY), "m.json")
    entry = parsed.exports[0]
    assert parsed.generated_time == "2023-03-05T04:17:59Z"
    assert (entry.counter, entry.export_type, entry.storage_size) == (1, None, 12130815)
    assert entry.finish_time == "2023-03-03T14:10:15.311651Z"
    assert entry.folder_name == "0f39bdf6-09c2-4e4d-6d4f-b02c961d8aaf"
    assert entry.bom.application.id == "-323232" and entry.bom.subscription.display_name == "(Demo) Pendo Experience"
    assert entry.bom.number_of_files == 65 and entry.bom.timestamp == "2023-02-16T20:21:11Z"
    assert entry.bom.definition_files[DefinitionTable.PAGES] == ("allpages.avro",)
    period = entry.bom.periods[0]
    assert period.day == date(2023, 2, 22)
    assert period.all_events.event_count == 9515 and period.all_events.files == ("allevents.avro",)
    (page,) = period.matched_events
    assert (page.matchable_type, page.matchable_id, page.event_count) == (
        MatchableType.PAGE, "OMZ5WpI3HXIhNIIf8Sl_5zJF688", 48314)


def test_absent_optional_keys_are_tolerated():
    parsed = parse_manifest(manifest({"counter": 7, "rootUrl": "gs://b/datasync/1/2/f",
                                      "timeDependent": [{"periodId": "2024-01-01T00:00:00Z"}]}), "m.json")
    entry = parsed.exports[0]
    assert entry.bom.definition_files == {}
    assert entry.bom.periods[0].all_events is None and entry.bom.periods[0].matched_events == ()
    assert entry.is_retroactive is False


def test_retroactive_export_type_and_empty_file_list():
    entry = dict(SEED_001_ENTRY, exportType=["Retroactive"], timeDependent=[{
        "periodId": "2023-01-02T00:00:00Z",
        "matchedEvents": [{"id": "Feature/-abc", "type": "Feature", "eventCount": 0, "files": []}]}])
    parsed = parse_manifest(manifest(entry), "m.json").exports[0]
    assert parsed.is_retroactive
    assert parsed.bom.periods[0].matched_events[0].files == ()


def test_entries_are_ordered_by_counter():
    entries = [dict(SEED_001_ENTRY, counter=c) for c in (3, 1, 2)]
    assert [e.counter for e in parse_manifest(manifest(*entries), "m.json").exports] == [1, 2, 3]


@pytest.mark.parametrize("raw, message", [
    (b'{"exports": [', "not valid JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"exports": {}}', "'exports' must be a list"),
    (manifest({"rootUrl": "x"}), "'counter' must be an integer"),
    (manifest(dict(SEED_001_ENTRY, counter=1), dict(SEED_001_ENTRY, counter=1)), "same counter appears twice"),
    (manifest(dict(SEED_001_ENTRY, timeDependent=[{"periodId": "yesterday"}])), "is not an ISO date"),
    (manifest(dict(SEED_001_ENTRY, timeDependent=[{"periodId": "2024-01-01T00:00:00Z", "matchedEvents": [
        {"id": "Guide/abc", "files": []}]}])), "unknown matched type 'Guide'"),
    (manifest(dict(SEED_001_ENTRY, timeDependent=[{"periodId": "2024-01-01T00:00:00Z", "allEvents": {
        "eventCount": -1, "files": []}}])), "non-negative integer"),
    (manifest(dict(SEED_001_ENTRY, pageDefinitionsFile="allpages.avro")), "expected a list of file names"),
])
def test_malformed_manifests_are_refused_with_a_message_naming_the_place(raw, message):
    with pytest.raises(ManifestError, match=message) as error:
        parse_manifest(raw, "gs://b/datasync/1/2/exportmanifest.json")
    assert "exportmanifest.json" in str(error.value)


@pytest.mark.slow  # generates the demo bucket: about 10 s
def test_the_sensors_lean_parse_sees_the_same_changes_as_the_full_parse(tmp_path):
    from pendo_assets.generator import generate
    from pendo_assets.pendo.plan import definition_tables_touched, tables_touched

    generate(scenario="demo", out_dir=tmp_path, end_day=date(2025, 3, 1))
    manifests = sorted(p for p in tmp_path.glob("datasync/*/*/exportmanifest.json")
                       if p.parent.name not in ("account", "visitor"))
    assert len(manifests) == 3
    for path in manifests:
        full = parse_manifest(path.read_bytes(), str(path))
        lean = parse_manifest(path.read_bytes(), str(path), matched_detail=False)
        assert [e.counter for e in lean.exports] == [e.counter for e in full.exports]
        for f, l in zip(full.exports, lean.exports):
            assert tables_touched(l) == tables_touched(f) and f.folder_name == l.folder_name
            assert definition_tables_touched(l) == definition_tables_touched(f)


def test_the_lean_parse_still_refuses_unknown_matched_types():
    entry = dict(SEED_001_ENTRY, timeDependent=[{"periodId": "2024-01-01T00:00:00Z", "matchedEvents": [
        {"id": "Guide/abc", "type": "Guide", "files": []}]}])
    with pytest.raises(ManifestError, match="unknown matched type 'Guide'"):
        parse_manifest(manifest(entry), "m.json", matched_detail=False)
