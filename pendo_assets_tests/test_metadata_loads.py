"""Visitor and account exports loaded by `load_metadata` into a real DuckDB file and the fakesnow server, compared
with the generator's truth (`pendo-datasync-format.md` §1.2, §3.3, §3.4, §4.2).

The `visitors-accounts` scenario is published one export day at a time into one folder, as Pendo would, and loaded
after each: a full first export split into files, daily deltas, a field added on day 3 and one deleted on day 4.
After every step the wide tables, the field catalogs and the long tables are read back whole and compared with
what the truth implies. Each test first asserts that the exports hold the situation it is about.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import fastavro
import pytest

from pendo_assets.defs.resources import open_exports
from pendo_assets.generator import SCENARIOS, generate
from pendo_assets.generator.generation import GeneratedExports, GeneratedSubscription
from pendo_assets.generator.metadata_exports import MetadataTruth
from pendo_assets.loading.loader import LoadError, load_day
from pendo_assets.loading.metadata_loader import MetadataLoad, load_metadata
from pendo_assets.pendo.metadata import MetadataKind, MetadataLocation
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.warehouse.base import Warehouse
from pendo_assets.warehouse.bookkeeping import applied_metadata_exports
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.pendo_queries import events_per_account
from pendo_assets.warehouse.snowflake import SnowflakeWarehouse
from pendo_assets_tests.e2e import rewrite_avro

SCENARIO = "visitors-accounts"
END_DAY = date(2025, 3, 10)
EXPORT_DAYS = SCENARIOS[SCENARIO].export_days
FIELD_ADDED_DAY = SCENARIOS[SCENARIO].metadata_exports.field_added_day
FIELD_DELETED_DAY = SCENARIOS[SCENARIO].metadata_exports.field_deleted_day
TAGS = ("exportcounter", "exportfolder")
ATTRIBUTES = ("group", "name", "displayname", "type", "elementtype", "elementformat", "isdeleted", "isperapp")
JSON_TYPES = {"JSON", "VARIANT"}
BACKENDS = ["duckdb", "snowflake"]


def as_of(step: int) -> date:
    """The day export `step` (1-based) is published: the scenario's last export lands on END_DAY."""
    return END_DAY - timedelta(days=EXPORT_DAYS - step)


def publish(out_dir: Path, step: int) -> GeneratedExports:
    return generate(SCENARIO, out_dir, end_day=END_DAY, as_of=as_of(step))


def location_of(subscription: GeneratedSubscription, kind: MetadataKind) -> MetadataLocation:
    return MetadataLocation(subscription.subscription_id, kind)


def truth_of(subscription: GeneratedSubscription, kind: MetadataKind) -> MetadataTruth:
    return subscription.visitor_truth if kind is MetadataKind.VISITOR else subscription.account_truth


def manifest_path_of(subscription: GeneratedSubscription, kind: MetadataKind) -> Path:
    return Path(subscription.visitor_manifest_path if kind is MetadataKind.VISITOR
                else subscription.account_manifest_path)


# --- The exports as published ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedExport:
    """One manifest entry of a visitor or account manifest, with the ids its record files hold."""

    counter: int
    folder: Path
    record_files: tuple[str, ...]
    ids: frozenset[str]

    @property
    def folder_name(self) -> str:
        return self.folder.name


def published(manifest_path: Path, kind: MetadataKind) -> list[PublishedExport]:
    exports = []
    for entry in json.loads(manifest_path.read_text(encoding="utf-8"))["exports"]:
        folder = manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[-1]
        files = tuple(entry[kind.plural]["files"])
        exports.append(PublishedExport(entry["counter"], folder, files,
                                       frozenset(row["id"] for name in files for row in avro_rows(folder / name))))
    return sorted(exports, key=lambda e: e.counter)


def avro_rows(path: Path) -> list[dict]:
    with path.open("rb") as avro_file:
        return list(fastavro.reader(avro_file))


def origin_of_ids(exports: list[PublishedExport]) -> dict[str, tuple[int, str]]:
    """Each id's latest export (counter, folder): the export whose row a per-id upsert keeps."""
    origin = {}
    for export in exports:
        origin.update({i: (export.counter, export.folder_name) for i in export.ids})
    return origin


# --- The warehouse read back --------------------------------------------------------------------------------------

def read_table(session, schema: str, table: str) -> list[dict] | None:
    """Every row, keyed by lower-cased column name (Snowflake upper-cases them), JSON/VARIANT parsed. A NULL
    timestamp is read through IS NULL: fakesnow returns it as 1970-01-01 (see snowflake-path.md)."""
    columns = session.table_columns(schema, table)
    if columns is None:
        return None
    q = session.quote
    selected = ", ".join(f"{q(name)}, {q(name)} IS NULL" for name in columns)
    rows = []
    for raw in session.query(f"SELECT {selected} FROM {q(schema)}.{q(table)}"):
        row = {}
        for i, (name, sql_type) in enumerate(columns.items()):
            value, is_null = raw[2 * i], raw[2 * i + 1]
            if is_null:
                value = None
            elif sql_type.upper() in JSON_TYPES:
                value = json.loads(value)
            row[name.lower()] = value
        rows.append(row)
    return rows


def read_kind(warehouse: Warehouse, location: MetadataLocation) -> dict[str, list[dict] | None]:
    kind = location.kind
    with warehouse.session() as session:
        return {table: read_table(session, location.schema_name, table)
                for table in (kind.records_table, kind.fields_table, kind.metadata_table)}


def ledger(warehouse: Warehouse, location: MetadataLocation) -> frozenset:
    with warehouse.session() as session:
        return applied_metadata_exports(session, location)


def canonical(rows: list[dict] | None) -> list[tuple]:
    """Rows as sorted tuples, to compare snapshots whatever order the warehouse returns them in."""
    return sorted((tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in row.items()))
                   for row in rows or []))


def snapshot(warehouse: Warehouse, location: MetadataLocation) -> dict[str, list[tuple]]:
    return {table: canonical(rows) for table, rows in read_kind(warehouse, location).items()}


def as_stored(value: object) -> object:
    """Timestamps are stored as naive UTC."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def typed(value: object, pendo_type: str) -> tuple[str, object]:
    """A value with its JSON type, so 1, 1.0 and true never compare equal; a `time` is a JSON string."""
    if pendo_type == "time":
        assert isinstance(value, (str, datetime)), value
        return "time", as_stored(value) if isinstance(value, datetime) else datetime.fromisoformat(value)
    if isinstance(value, list):
        return "list", tuple(value)
    return type(value).__name__, value


# --- Expected from the truth ----------------------------------------------------------------------------------

def assert_matches_truth(warehouse: Warehouse, location: MetadataLocation, truth: MetadataTruth,
                         exports: list[PublishedExport], stray: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """The three tables of the kind hold exactly what the truth implies; returns them as read. `stray`: wide
    columns a refused export left behind, NULL in every row."""
    kind = location.kind
    tables = read_kind(warehouse, location)
    origin = origin_of_ids(exports)
    assert set(origin) == set(truth.records), "the exports carry exactly the truth's ids"
    latest = exports[-1]

    # The field catalog: the latest metadataschema row of every field, from the latest export.
    catalog = {row["avrofieldname"]: row for row in tables[kind.fields_table]}
    assert len(catalog) == len(tables[kind.fields_table]), "a field is in the catalog twice"
    assert catalog == {name: {**{k.lower(): v for k, v in row.items()}, "exportcounter": latest.counter,
                              "exportfolder": latest.folder_name}
                       for name, row in truth.fields.items()}

    # The wide table: one row per id, every field column, the values of the id's latest row.
    wide = tables[kind.records_table]
    by_id = {row["id"]: row for row in wide}
    assert len(by_id) == len(wide), f"{kind.records_table} holds an id twice"
    assert set(by_id) == set(truth.records)
    for row in wide:
        assert set(row) == {"id", *TAGS, *truth.fields, *stray}, f"{kind.records_table} columns"
    for entity_id, record in truth.records.items():
        expected = {"id": entity_id, "exportcounter": origin[entity_id][0], "exportfolder": origin[entity_id][1],
                    **{name: None for name in (*truth.fields, *stray)},
                    **{name: as_stored(value) for name, value in record.items()}}
        assert by_id[entity_id] == expected, entity_id

    # The long table: one row per id and field holding a value, the field's attributes from the catalog.
    long_rows = tables[kind.metadata_table] or []
    id_column = kind.id_column.lower()
    for row in long_rows:
        assert set(row) == {id_column, *ATTRIBUTES, "value", *TAGS}, f"{kind.metadata_table} columns"
    loaded = sorted((row[id_column], tuple(row[a] for a in ATTRIBUTES), typed(row["value"], row["type"]),
                     row["exportcounter"], row["exportfolder"]) for row in long_rows)
    expected_long = sorted(
        (entity_id, tuple(catalog[name][a] for a in ATTRIBUTES), typed(value, catalog[name]["type"]),
         *origin[entity_id])
        for entity_id, record in truth.records.items() for name, value in record.items() if value is not None)
    assert loaded == expected_long
    return tables


# --- Backends ------------------------------------------------------------------------------------------------------

def new_warehouse(request: pytest.FixtureRequest, backend: str, folder: Path) -> Warehouse:
    """A DuckDB file in `folder`, or a new database on the session's fakesnow server (its password set by the
    caller's monkeypatch)."""
    if backend == "duckdb":
        return DuckDBWarehouse(folder / "w.duckdb")
    server = request.getfixturevalue("snowflake_server")
    return SnowflakeWarehouse(server.target(server.create_database(request.node.name)))


@pytest.fixture
def warehouse_for(request, tmp_path, monkeypatch):
    """`warehouse_for(backend)`: a new, empty warehouse of that backend for this test."""
    def make(backend: str) -> Warehouse:
        if backend == "snowflake":
            request.getfixturevalue("snowflake_server").use_in(monkeypatch)
        return new_warehouse(request, backend, tmp_path)
    return make


@dataclass
class Step:
    number: int
    subscription: GeneratedSubscription
    exports: dict[MetadataKind, list[PublishedExport]]
    loads: dict[MetadataKind, MetadataLoad]
    tables: dict[MetadataKind, dict[str, list[dict] | None]] = field(default_factory=dict)
    mismatch: dict[MetadataKind, str | None] = field(default_factory=dict)


@dataclass
class Stepped:
    backend: str
    warehouse: Warehouse
    exports_dir: Path
    generated: GeneratedExports
    steps: list[Step]

    def step(self, number: int) -> Step:
        return self.steps[number - 1]


def load_step_by_step(request, backend: str, root: Path) -> Stepped:
    warehouse = new_warehouse(request, backend, root)
    store = open_exports(str(root / "exports"))
    steps = []
    for number in range(1, EXPORT_DAYS + 1):
        generated = publish(root / "exports", number)
        (subscription,) = generated.subscriptions
        step = Step(number, subscription, {}, {})
        for kind in MetadataKind:
            location = location_of(subscription, kind)
            step.exports[kind] = published(manifest_path_of(subscription, kind), kind)
            step.loads[kind] = load_metadata(store, warehouse, location, f"step-{number}")
            # Compared now, while the warehouse holds this step; the tests report a mismatch.
            try:
                step.tables[kind] = assert_matches_truth(warehouse, location, truth_of(subscription, kind),
                                                         step.exports[kind])
                step.mismatch[kind] = None
            except AssertionError as exc:
                step.tables[kind] = read_kind(warehouse, location)
                step.mismatch[kind] = f"step {number}, {kind.plural}: {exc}"
        steps.append(step)
    return Stepped(backend, warehouse, root / "exports", generated, steps)


# Loaded once per module and backend: the step-by-step load the tests below read.
@pytest.fixture(scope="module")
def stepped_duckdb(request, tmp_path_factory) -> Stepped:
    return load_step_by_step(request, "duckdb", tmp_path_factory.mktemp("stepped-duckdb"))


@pytest.fixture(scope="module")
def stepped_snowflake(request, tmp_path_factory, snowflake_server):
    with pytest.MonkeyPatch.context() as monkeypatch:
        snowflake_server.use_in(monkeypatch)
        yield load_step_by_step(request, "snowflake", tmp_path_factory.mktemp("stepped-snowflake"))


@pytest.fixture(params=BACKENDS)
def stepped(request) -> Stepped:
    return request.getfixturevalue(f"stepped_{request.param}")


def assert_step_matches_truth(stepped: Stepped, number: int) -> None:
    step = stepped.step(number)
    for kind in MetadataKind:
        assert step.mismatch[kind] is None, step.mismatch[kind]
        assert step.loads[kind].applied == [number]
        truth = truth_of(step.subscription, kind)
        tables = step.loads[kind].tables
        assert tables[kind.records_table].rows == len(truth.records)
        assert tables[kind.fields_table].rows == len(truth.fields)


# --- 1. Step by step ---------------------------------------------------------------------------------------------

def test_the_first_export_is_full_and_split_across_files(stepped):
    step = stepped.step(1)
    (first,) = step.exports[MetadataKind.VISITOR]
    assert len(first.record_files) > 1, "the first visitor export is split into several files"
    per_file = [{row["id"] for row in avro_rows(first.folder / name)} for name in first.record_files]
    assert all(per_file) and sum(map(len, per_file)) == len(first.ids), "each file holds other visitors"
    for kind in MetadataKind:
        (export,) = step.exports[kind]
        assert export.ids == set(truth_of(step.subscription, kind).records), f"export 1 holds every {kind.value}"
    assert_step_matches_truth(stepped, 1)


def test_a_delta_replaces_its_ids_rows_and_keeps_the_ids_it_omits(stepped):
    before, after = stepped.step(1), stepped.step(2)
    visitors = MetadataKind.VISITOR
    delta = after.exports[visitors][-1]
    old, new = truth_of(before.subscription, visitors).records, truth_of(after.subscription, visitors).records
    assert delta.counter == 2 and 0 < len(delta.ids) < len(new), "the delta carries some visitors, not all"
    assert any(old[i] != new[i] for i in delta.ids), "the delta changes a visitor's metadata"
    assert any(old[i][name] is not None and new[i][name] is None for i in delta.ids for name in new[i]), \
        "a value the delta clears must leave VISITORS and VISITORMETADATA"
    assert_step_matches_truth(stepped, 2)
    wide = {row["id"]: row["exportcounter"] for row in after.tables[visitors][visitors.records_table]}
    assert {i for i, counter in wide.items() if counter == 2} == delta.ids
    assert {i for i, counter in wide.items() if counter == 1} == set(new) - delta.ids


def test_a_field_added_is_a_new_column_null_in_older_rows(stepped):
    before, after = stepped.step(FIELD_ADDED_DAY - 1), stepped.step(FIELD_ADDED_DAY)
    for kind in MetadataKind:
        added = set(truth_of(after.subscription, kind).fields) - set(truth_of(before.subscription, kind).fields)
        assert len(added) == 1, f"day {FIELD_ADDED_DAY} adds one {kind.value} field"
        (name,) = added
        assert name not in before.tables[kind][kind.records_table][0]
        rows = after.tables[kind][kind.records_table]
        older = [row for row in rows if row["exportcounter"] < FIELD_ADDED_DAY]
        assert older and all(row[name] is None for row in older), f"older {kind.plural} read NULL in {name}"
        if kind is MetadataKind.VISITOR:
            assert any(row[name] is not None for row in rows), "the delta fills the new field"
            assert any(row["name"] == "renewal_date" for row in after.tables[kind][kind.metadata_table])
        else:  # nobody's account changed the day before: an export of no rows still brings the new column
            assert not after.exports[kind][-1].ids
    assert_step_matches_truth(stepped, FIELD_ADDED_DAY)


def test_a_deleted_field_keeps_its_catalog_row_marked_deleted(stepped):
    for kind in MetadataKind:
        before, after = stepped.step(FIELD_DELETED_DAY - 1), stepped.step(FIELD_DELETED_DAY)
        fields_before, fields_after = truth_of(before.subscription, kind).fields, truth_of(after.subscription,
                                                                                             kind).fields
        deleted = [name for name, row in fields_after.items() if row["isDeleted"]]
        assert len(deleted) == 1 and not fields_before[deleted[0]]["isDeleted"], f"a {kind.value} field is deleted"
        catalog = {row["avrofieldname"]: row for row in after.tables[kind][kind.fields_table]}
        assert catalog[deleted[0]]["isdeleted"] is True
        assert deleted[0] in after.tables[kind][kind.records_table][0], "its column stays"
    visitors = MetadataKind.VISITOR
    step = stepped.step(FIELD_DELETED_DAY)
    (deleted,) = [n for n, row in truth_of(step.subscription, visitors).fields.items() if row["isDeleted"]]
    kept = [row for row in step.tables[visitors][visitors.records_table] if row[deleted] is not None]
    assert kept and all(row["exportcounter"] < FIELD_DELETED_DAY for row in kept), \
        "values exported before the deletion stay; none arrive after it"
    long_rows = [row for row in step.tables[visitors][visitors.metadata_table] if row["name"] == "legacy_flag"]
    assert len(long_rows) == len(kept) and all(row["isdeleted"] is True for row in long_rows), \
        "VISITORMETADATA agrees with the catalog that the field is deleted"
    assert_step_matches_truth(stepped, FIELD_DELETED_DAY)


def test_the_last_step_equals_the_truth(stepped):
    assert_step_matches_truth(stepped, EXPORT_DAYS)
    accounts = MetadataKind.ACCOUNT
    empty = [e for e in stepped.step(EXPORT_DAYS).exports[accounts] if not e.ids]
    assert empty, "an account export with no rows (nobody changed) is applied too"
    for export in empty:
        assert stepped.step(export.counter).loads[accounts].applied == [export.counter]


# --- 3. Idempotency ------------------------------------------------------------------------------------------------

def test_loading_again_changes_nothing(stepped):
    store = open_exports(str(stepped.exports_dir))
    for kind in MetadataKind:
        location = location_of(stepped.step(EXPORT_DAYS).subscription, kind)
        before, applied_before = snapshot(stepped.warehouse, location), ledger(stepped.warehouse, location)
        assert len(applied_before) == EXPORT_DAYS
        result = load_metadata(store, stepped.warehouse, location, "again")
        assert result.applied == []
        assert all(load.unchanged for load in result.tables.values())
        assert snapshot(stepped.warehouse, location) == before
        assert ledger(stepped.warehouse, location) == applied_before


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("snowflake", marks=pytest.mark.slow)])
def test_all_exports_at_once_build_the_same_tables_as_step_by_step(request, backend, warehouse_for, tmp_path):
    stepped = request.getfixturevalue(f"stepped_{backend}")
    exports_dir = tmp_path / "exports"
    generated = publish(exports_dir, EXPORT_DAYS)
    warehouse = warehouse_for(backend)
    store = open_exports(str(exports_dir))
    for kind in MetadataKind:
        location = location_of(generated.subscriptions[0], kind)
        assert load_metadata(store, warehouse, location, "all-at-once").applied == list(range(1, EXPORT_DAYS + 1))
        assert snapshot(warehouse, location) == snapshot(stepped.warehouse, location)
        assert ledger(warehouse, location) == ledger(stepped.warehouse, location)


# --- 2. Rotation -------------------------------------------------------------------------------------------------

def rewrite_manifest(manifest_path: Path, keep) -> list[int]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["exports"] = [e for e in manifest["exports"] if keep(e["counter"])]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return [e["counter"] for e in manifest["exports"]]


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("snowflake", marks=pytest.mark.slow)])
def test_exports_rotated_out_of_the_manifest_keep_their_rows(backend, warehouse_for, tmp_path):
    exports_dir, visitors = tmp_path / "exports", MetadataKind.VISITOR
    warehouse, store = warehouse_for(backend), open_exports(str(tmp_path / "exports"))
    location = location_of(publish(exports_dir, 2).subscriptions[0], visitors)
    assert load_metadata(store, warehouse, location, "early").applied == [1, 2]
    latest = publish(exports_dir, EXPORT_DAYS).subscriptions[0]
    manifest_path = manifest_path_of(latest, visitors)
    every_export = published(manifest_path, visitors)
    # The 30-day window moved on: exports 1 and 2 left the manifest, their folders may stay or go.
    assert rewrite_manifest(manifest_path, lambda counter: counter > 2) == [3, 4, 5]
    truth = truth_of(latest, visitors)
    assert set(truth.records) - {i for e in published(manifest_path, visitors) for i in e.ids}, \
        "some visitors' latest rows are only in the exports that rotated out"
    for export in every_export[:2]:
        shutil.rmtree(export.folder)

    assert load_metadata(store, warehouse, location, "rotated").applied == [3, 4, 5]

    assert_matches_truth(warehouse, location, truth, every_export)
    assert {counter for counter, _ in ledger(warehouse, location)} == {1, 2, 3, 4, 5}
    assert load_metadata(store, warehouse, location, "again").applied == []



# --- 4. Out of order -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["duckdb", pytest.param("snowflake", marks=pytest.mark.slow)])
def test_an_export_applied_after_a_later_one_never_undoes_it(backend, warehouse_for, tmp_path):
    """Export 4 is listed only after export 5 was applied (it finished late): its rows of ids export 5 carries,
    and its catalog rows, give way to export 5's; the rest of it still lands."""
    exports_dir, visitors = tmp_path / "exports", MetadataKind.VISITOR
    warehouse, store = warehouse_for(backend), open_exports(str(exports_dir))
    latest = publish(exports_dir, EXPORT_DAYS).subscriptions[0]
    location, manifest_path = location_of(latest, visitors), manifest_path_of(latest, visitors)
    every_export = published(manifest_path, visitors)
    late, later = every_export[3], every_export[4]
    assert (late.counter, later.counter) == (4, 5)
    assert late.ids & later.ids and late.ids - later.ids, "export 4 has ids export 5 replaces, and others"
    complete = manifest_path.read_text(encoding="utf-8")
    assert rewrite_manifest(manifest_path, lambda counter: counter != 4) == [1, 2, 3, 5]
    assert load_metadata(store, warehouse, location, "without-4").applied == [1, 2, 3, 5]
    manifest_path.write_text(complete, encoding="utf-8")

    assert load_metadata(store, warehouse, location, "late-4").applied == [4]

    assert_matches_truth(warehouse, location, truth_of(latest, visitors), every_export)

# --- A delta that clears every value of an id ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["duckdb", pytest.param("snowflake", marks=pytest.mark.slow)])
def test_an_id_whose_values_all_become_null_loses_its_long_rows(backend, warehouse_for, tmp_path):
    exports_dir, visitors = tmp_path / "exports", MetadataKind.VISITOR
    warehouse, store = warehouse_for(backend), open_exports(str(exports_dir))
    location = location_of(publish(exports_dir, 1).subscriptions[0], visitors)
    load_metadata(store, warehouse, location, "first")
    subscription = publish(exports_dir, 2).subscriptions[0]
    delta = published(manifest_path_of(subscription, visitors), visitors)[-1]
    victim = sorted(delta.ids)[0]
    long_before = [r for r in read_kind(warehouse, location)[visitors.metadata_table] if r["visitorid"] == victim]
    assert long_before, "the visitor has values before the delta"

    def clear_victim(records):
        return [{name: (value if name == "id" or record["id"] != victim else None) for name, value in record.items()}
                for record in records]
    for name in delta.record_files:
        rewrite_avro(delta.folder / name, clear_victim)

    assert load_metadata(store, warehouse, location, "delta").applied == [2]

    tables = read_kind(warehouse, location)
    (row,) = [r for r in tables[visitors.records_table] if r["id"] == victim]
    assert row["exportcounter"] == 2 and all(v is None for k, v in row.items() if k not in {"id", *TAGS})
    assert [r for r in tables[visitors.metadata_table] if r["visitorid"] == victim] == [], \
        "VISITORMETADATA must not keep values the latest export cleared"


# --- 5. Bad input ------------------------------------------------------------------------------------------------

@dataclass
class Damaged:
    """Export 2 of the visitors, published and damaged, with export 1 loaded."""

    warehouse: Warehouse
    store: object
    location: MetadataLocation
    subscription: GeneratedSubscription
    manifest_path: Path
    export: PublishedExport


def first_export_loaded_and_second_published(warehouse: Warehouse, exports_dir: Path) -> Damaged:
    visitors = MetadataKind.VISITOR
    store = open_exports(str(exports_dir))
    location = location_of(publish(exports_dir, 1).subscriptions[0], visitors)
    assert load_metadata(store, warehouse, location, "first").applied == [1]
    subscription = publish(exports_dir, 2).subscriptions[0]
    manifest_path = manifest_path_of(subscription, visitors)
    export = published(manifest_path, visitors)[-1]
    assert export.counter == 2
    return Damaged(warehouse, store, location, subscription, manifest_path, export)


def missing_file(d: Damaged) -> tuple[str, ...]:
    (d.export.folder / d.export.record_files[0]).unlink()
    return (d.export.record_files[0], "1 listed file(s) missing", "nothing was deleted or loaded")


def truncated_file(d: Damaged) -> tuple[str, ...]:
    """The header stays readable, so the load starts and the file fails mid-stream, inside the transaction."""
    path = d.export.folder / d.export.record_files[0]
    path.write_bytes(path.read_bytes()[:-24])
    return (d.export.record_files[0], "Nothing was changed")


def field_type_changed(d: Damaged) -> tuple[str, ...]:
    """A string field arrives as a long: storing it would change the column's meaning."""
    path = d.export.folder / d.export.record_files[0]
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        schema, codec, records = reader.writer_schema, reader.codec, list(reader)
    for column in schema["fields"]:
        if column["name"] == "custom__plan_tier":
            column["type"] = ["null", "long"]
    with path.open("wb") as fo:
        fastavro.writer(fo, schema, [{**r, "custom__plan_tier": 7} for r in records], codec=codec)
    return (d.export.record_files[0], "'custom__plan_tier'", "refusing to coerce")


def name_out_of_the_export(d: Damaged) -> tuple[str, ...]:
    manifest = json.loads(d.manifest_path.read_text(encoding="utf-8"))
    name = f"../{published(d.manifest_path, MetadataKind.VISITOR)[0].folder_name}/visitors-000.avro"
    for entry in manifest["exports"]:
        if entry["counter"] == d.export.counter:
            entry["visitors"]["files"] = [name]
    d.manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return (f"file name {name!r} must not contain", "Nothing was loaded")


def undescribed_column(d: Damaged) -> tuple[str, ...]:
    """A wide column metadataschema.avro does not describe: the check fails after the rows are in, rolling back."""
    path = d.export.folder / d.export.record_files[0]
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        schema, codec, records = reader.writer_schema, reader.codec, list(reader)
    schema["fields"].append({"name": "custom__mystery", "type": ["null", "string"]})
    with path.open("wb") as fo:
        fastavro.writer(fo, schema, [{**r, "custom__mystery": "?"} for r in records], codec=codec)
    return (d.export.record_files[0], "custom__mystery", "no VISITORMETADATASCHEMA row describes",
            "Export 2 was not applied")


def fields_sharing_group_and_name(d: Damaged) -> tuple[str, ...]:
    """Two fields of metadataschema.avro with one group and name: the long table could not tell them apart."""
    (name,) = [e["metadataSchemaFile"] for e in json.loads(d.manifest_path.read_text(encoding="utf-8"))["exports"]
               if e["counter"] == d.export.counter]
    path = d.export.folder / (name if isinstance(name, str) else name[0])
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        schema, codec, records = reader.writer_schema, reader.codec, list(reader)
    first, second = records[0], records[1]
    second["group"], second["name"] = first["group"], first["name"]
    with path.open("wb") as fo:
        fastavro.writer(fo, schema, records, codec=codec)
    return (first["avroFieldName"], second["avroFieldName"], f"share group {first['group']!r}",
            "Export 2 was not applied")


def reexport_elsewhere(d: Damaged) -> None:
    """Export 2 published again under the same counter in a new folder, as a rewritten manifest would have it."""
    manifest = json.loads(d.manifest_path.read_text(encoding="utf-8"))
    for entry in manifest["exports"]:
        if entry["counter"] == d.export.counter:
            entry["rootUrl"] = entry["rootUrl"].rsplit("/", 1)[0] + "/reexported"
    d.export.folder.rename(d.export.folder.with_name("reexported"))
    d.manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


DAMAGES = {f.__name__: f for f in (missing_file, truncated_file, field_type_changed, name_out_of_the_export,
                                   undescribed_column, fields_sharing_group_and_name)}
# On Snowflake each case loads two exports (~5 s): the fast set keeps the two failing inside the transaction.
FAST_ON_SNOWFLAKE = {"truncated_file", "undescribed_column"}


@pytest.mark.parametrize("backend, damage", [
    *[("duckdb", damage) for damage in DAMAGES],
    *[pytest.param("snowflake", damage, marks=() if damage in FAST_ON_SNOWFLAKE else pytest.mark.slow)
      for damage in DAMAGES]])
def test_a_bad_export_fails_naming_it_loses_nothing_and_the_good_one_loads_next(backend, damage, warehouse_for,
                                                                                tmp_path):
    exports_dir = tmp_path / "exports"
    d = first_export_loaded_and_second_published(warehouse_for(backend), exports_dir)
    pristine = tmp_path / "pristine"
    shutil.copytree(exports_dir, pristine)
    before, applied_before = snapshot(d.warehouse, d.location), ledger(d.warehouse, d.location)
    columns_before = {t: set(rows[0]) for t, rows in read_kind(d.warehouse, d.location).items()}

    expected_in_message = DAMAGES[damage](d)
    with pytest.raises(LoadError) as failed:
        load_metadata(d.store, d.warehouse, d.location, "damaged")

    message = str(failed.value)
    for text in (f"subscription {d.subscription.subscription_id} visitors", "export 2", *expected_in_message):
        assert text in message, (text, message)
    after = read_kind(d.warehouse, d.location)
    assert {t: canonical([{c: r[c] for c in columns_before[t]} for r in rows]) for t, rows in after.items()} \
        == before, "the tables keep every row and value"
    if damage != "undescribed_column":  # its column was added before the transaction, as columns always are
        assert {t: set(rows[0]) for t, rows in after.items()} == columns_before
    assert ledger(d.warehouse, d.location) == applied_before

    shutil.rmtree(exports_dir)
    shutil.copytree(pristine, exports_dir)
    if damage == "name_out_of_the_export":
        # The catalog keeps an export's entry as first seen for its counter and folder (see the xfail below):
        # what repairs it is Pendo's re-export, into another folder.
        reexport_elsewhere(d)
    assert load_metadata(d.store, d.warehouse, d.location, "repaired").applied == [2]
    # A column added for the refused file stays, empty, as columns are added before the transaction.
    stray = ("custom__mystery",) if damage == "undescribed_column" else ()
    assert_matches_truth(d.warehouse, d.location, truth_of(d.subscription, MetadataKind.VISITOR),
                         published(d.manifest_path, MetadataKind.VISITOR), stray)


@pytest.mark.xfail(strict=True, reason="bookkeeping.record_metadata_manifest re-records an export only when its "
                   "folder changes, so a manifest entry corrected in place is never read again")
def test_a_manifest_entry_corrected_in_place_is_read_again(warehouse_for, tmp_path):
    d = first_export_loaded_and_second_published(warehouse_for("duckdb"), tmp_path / "exports")
    good = d.manifest_path.read_text(encoding="utf-8")
    name_out_of_the_export(d)
    with pytest.raises(LoadError, match="must not contain"):
        load_metadata(d.store, d.warehouse, d.location, "damaged")
    d.manifest_path.write_text(good, encoding="utf-8")

    assert load_metadata(d.store, d.warehouse, d.location, "corrected").applied == [2]



# --- 6. Events joined to visitors and accounts ---------------------------------------------------------------------

def test_events_join_visitors_and_accounts_as_an_analyst_would_write_it(stepped):
    """Unquoted identifiers, as an analyst types them: Snowflake resolves e.visitorId to the upper-cased column.
    Only the app's schema is quoted, since its application id -323232 holds a minus sign."""
    (app,) = stepped.generated.apps
    app_location = AppLocation(app.subscription_id, app.application_id)
    day = max(day for day, ids in app.truth.allevents.items() if ids)
    load_day(open_exports(str(stepped.exports_dir)), stepped.warehouse, app_location, day, [EventTable.ALLEVENTS],
             "events")
    subscription = stepped.step(EXPORT_DAYS).subscription
    visitors = truth_of(subscription, MetadataKind.VISITOR).records
    accounts = truth_of(subscription, MetadataKind.ACCOUNT).records
    with stepped.warehouse.session() as session:
        q = session.quote
        events = session.query(f"SELECT {q('eventId')}, {q('visitorId')}, {q('accountId')} "
                               f"FROM {q(app_location.schema_name)}.{q('ALLEVENTS')}")
        assert len(events) == len(app.truth.allevents[day])
        assert all(visitor in visitors for _, visitor, _ in events), "every event's visitor was exported"
        with_account = [(e, v, a) for e, v, a in events if a in accounts]
        assert with_account and len({a for _, _, a in with_account}) > 1, "events of several accounts"

        sub, schema = subscription.subscription_id, f'"{app_location.schema_name}"'
        joined = session.query(
            f"SELECT e.eventId, v.id, v.agent__email FROM {schema}.ALLEVENTS e "
            f"JOIN SUB_{sub}_VISITOR.VISITORS v ON e.visitorId = v.id")
        both = session.query(
            f"SELECT e.eventId, v.agent__full_name, a.id, a.agent__name FROM {schema}.ALLEVENTS e "
            f"JOIN SUB_{sub}_VISITOR.VISITORS v ON e.visitorId = v.id "
            f"JOIN SUB_{sub}_ACCOUNT.ACCOUNTS a ON e.accountId = a.id")
        per_account = session.query(events_per_account(
            *map(q, (app_location.schema_name, f"SUB_{sub}_VISITOR", f"SUB_{sub}_ACCOUNT"))))

    assert sorted(joined) == sorted((e, v, visitors[v]["agent__email"]) for e, v, _ in events)
    assert sorted(both) == sorted((e, visitors[v]["agent__full_name"], a, accounts[a]["agent__name"])
                                  for e, v, a in with_account)
    expected = {a: (sum(1 for _, _, b in with_account if b == a), len({v for _, v, b in with_account if b == a}))
                for a in {a for _, _, a in with_account}}
    assert {a: (n, visitors_seen) for a, n, visitors_seen in per_account} == expected, "the demo's query"
