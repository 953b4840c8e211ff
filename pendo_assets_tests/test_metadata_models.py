"""Visitor and account manifests parsed without a store or warehouse: what an entry says, and each way one can be
wrong, named by entry and key (`pendo-datasync-format.md` §1.2, §2.1, §3.3, §3.4)."""

import json

import pytest

from pendo_assets.pendo.metadata import MetadataExport, MetadataKind, MetadataLocation, parse_metadata_manifest
from pendo_assets.pendo.models import ManifestError

SUBSCRIPTION = "5123456789012345"
ROOT = f"gs://acme-pendo-exports/datasync/{SUBSCRIPTION}/visitor"
VISITOR_ENTRY = {
    "counter": 1,
    "visitors": {"files": ["visitors-000.avro", "visitors-001.avro"]},
    "metadataSchemaFile": "metadataschema.avro",
    "timestamp": "2025-03-06T05:24:35Z", "numberOfFiles": 3,
    "subscription": {"displayName": "Acme Corp", "id": SUBSCRIPTION},
    "exportType": None, "finishTime": "2025-03-06T05:36:35.138874Z", "storageSize": 8400,
    "rootUrl": f"{ROOT}/82a9b9de9ca79c71831cbbbbd139938d",
    "someFutureKey": {"ignored": True},
}


def manifest(*entries) -> str:
    return json.dumps({"exports": list(entries), "generatedTime": "2025-03-10T05:36:02Z"})


def entry(**changes) -> dict:
    return {**VISITOR_ENTRY, **changes}


def test_a_visitor_entry_is_parsed_with_its_bill_of_materials():
    (export,) = parse_metadata_manifest(manifest(VISITOR_ENTRY), "m.json", MetadataKind.VISITOR)
    assert export == MetadataExport(
        counter=1, root_url=VISITOR_ENTRY["rootUrl"], finish_time="2025-03-06T05:36:35.138874Z",
        timestamp="2025-03-06T05:24:35Z", record_files=("visitors-000.avro", "visitors-001.avro"),
        schema_files=("metadataschema.avro",), record_count=None)
    assert export.folder_name == "82a9b9de9ca79c71831cbbbbd139938d"


def test_the_schema_file_may_be_one_name_or_a_list():
    as_list = entry(metadataSchemaFile=["metadataschema.avro", "metadataschema-001.avro"])
    (one,) = parse_metadata_manifest(manifest(VISITOR_ENTRY), "m.json", MetadataKind.VISITOR)
    (listed,) = parse_metadata_manifest(manifest(as_list), "m.json", MetadataKind.VISITOR)
    assert one.schema_files == ("metadataschema.avro",)
    assert listed.schema_files == ("metadataschema.avro", "metadataschema-001.avro")


def test_an_account_manifest_reads_the_accounts_key_and_its_count():
    account = {"counter": 4, "accounts": {"files": ["accounts-000.avro"], "count": 7},
               "metadataSchemaFile": ["metadataschema.avro"], "rootUrl": f"{ROOT[:-7]}account/f"}
    (export,) = parse_metadata_manifest(manifest(account), "m.json", MetadataKind.ACCOUNT)
    assert (export.counter, export.record_files, export.record_count) == (4, ("accounts-000.avro",), 7)
    # The same entry read as a visitor manifest has no visitor files: the key is the kind's.
    (as_visitors,) = parse_metadata_manifest(manifest(account), "m.json", MetadataKind.VISITOR)
    assert as_visitors.record_files == ()


def test_missing_keys_of_the_kind_read_as_no_files():
    bare = {"counter": 2, "rootUrl": f"{ROOT}/f"}
    (export,) = parse_metadata_manifest(manifest(bare), "m.json", MetadataKind.VISITOR)
    assert (export.record_files, export.schema_files, export.record_count) == ((), (), None)
    assert (export.finish_time, export.timestamp) == (None, None)


def test_exports_come_in_counter_order_whatever_the_file_says():
    exports = parse_metadata_manifest(manifest(entry(counter=3), entry(counter=1), entry(counter=2)), "m.json",
                                      MetadataKind.VISITOR)
    assert [e.counter for e in exports] == [1, 2, 3]


def test_an_empty_manifest_has_no_exports():
    assert parse_metadata_manifest('{"exports": []}', "m.json", MetadataKind.VISITOR) == ()
    assert parse_metadata_manifest("{}", "m.json", MetadataKind.VISITOR) == ()


@pytest.mark.parametrize("raw, message", [
    (manifest(VISITOR_ENTRY)[:40], r"m\.json: not valid JSON .*truncated or still being written"),
    (b"\xff\xfe{}", r"m\.json: not valid JSON"),
    ('["exports"]', r"m\.json: expected a JSON object with an 'exports' list"),
    ('{"exports": {"counter": 1}}', r"m\.json: expected a JSON object with an 'exports' list"),
    (manifest("not an object"), r"m\.json: exports\[0\]: expected an object"),
    (manifest(entry(counter="1")), r"m\.json: exports\[0\]: 'counter' must be an integer, got '1'"),
    (manifest(entry(counter=True)), r"exports\[0\]: 'counter' must be an integer, got True"),
    (manifest(entry(counter=None)), r"exports\[0\]: 'counter' must be an integer, got None"),
    (manifest(entry(counter=1.0)), r"exports\[0\]: 'counter' must be an integer, got 1.0"),
    (manifest(entry(counter=1), entry(counter=2), entry(counter=1)),
     r"m\.json: the same counter appears twice: \[1, 1, 2\]"),
    (manifest(entry(visitors=["visitors.avro"])),
     r"exports\[0\] \(export 1\): 'visitors' must be an object with a 'files' list"),
    (manifest(entry(visitors={"files": "visitors.avro"})),
     r"exports\[0\] \(export 1\): visitors\.files: expected a list of file names, got 'visitors.avro'"),
    (manifest(entry(visitors={"files": ["visitors-000.avro", 7]})),
     r"visitors\.files: expected a list of file names"),
    (manifest(entry(metadataSchemaFile={"file": "metadataschema.avro"})),
     r"exports\[0\] \(export 1\): metadataSchemaFile: expected a list of file names"),
    (manifest(entry(metadataSchemaFile=[None])), r"metadataSchemaFile: expected a list of file names, got \[None\]"),
    (manifest(entry(visitors={"files": [], "count": -1})),
     r"export 1\): visitors\.count must be a non-negative integer, got -1"),
    (manifest(entry(visitors={"files": [], "eventCount": "3"})),
     r"visitors\.count must be a non-negative integer, got '3'"),
    (manifest(entry(rootUrl=["gs://b/f"])), r"export 1\): 'rootUrl' must be a string"),
    (manifest(entry(finishTime=20250306)), r"export 1\): 'finishTime' must be a string, got 20250306"),
])
def test_a_bad_manifest_is_refused_naming_entry_and_key(raw, message):
    with pytest.raises(ManifestError, match=message):
        parse_metadata_manifest(raw, "m.json", MetadataKind.VISITOR)


def test_the_error_of_a_later_entry_names_that_entry():
    with pytest.raises(ManifestError, match=r"exports\[1\] \(export 9\): visitors\.files"):
        parse_metadata_manifest(manifest(VISITOR_ENTRY, entry(counter=9, visitors={"files": None})), "m.json",
                                MetadataKind.VISITOR)


def test_an_entry_without_root_url_has_no_folder():
    (export,) = parse_metadata_manifest(manifest(entry(rootUrl=None)), "m.json", MetadataKind.VISITOR)
    with pytest.raises(ManifestError, match="export 1 has no rootUrl"):
        export.folder_name


@pytest.mark.parametrize("kind, names", [
    (MetadataKind.VISITOR, ("visitor", "visitors", "VISITORS", "VISITORMETADATA", "VISITORMETADATASCHEMA",
                            "visitorId")),
    (MetadataKind.ACCOUNT, ("account", "accounts", "ACCOUNTS", "ACCOUNTMETADATA", "ACCOUNTMETADATASCHEMA",
                            "accountId")),
])
def test_each_kind_names_its_folder_files_tables_and_id_column(kind, names):
    assert (kind.folder, kind.plural, kind.records_table, kind.metadata_table, kind.fields_table,
            kind.id_column) == names


@pytest.mark.parametrize("kind, folder, schema, label", [
    (MetadataKind.VISITOR, f"datasync/{SUBSCRIPTION}/visitor", f"SUB_{SUBSCRIPTION}_VISITOR",
     f"subscription {SUBSCRIPTION} visitors"),
    (MetadataKind.ACCOUNT, f"datasync/{SUBSCRIPTION}/account", f"SUB_{SUBSCRIPTION}_ACCOUNT",
     f"subscription {SUBSCRIPTION} accounts"),
])
def test_a_location_names_its_folder_manifest_schema_and_label(kind, folder, schema, label):
    location = MetadataLocation(SUBSCRIPTION, kind)
    assert (location.folder, location.manifest_path, location.schema_name, location.label) == (
        folder, f"{folder}/exportmanifest.json", schema, label)
    assert location.sort_key == (SUBSCRIPTION, kind.value)

