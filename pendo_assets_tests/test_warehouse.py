from datetime import date

import pyarrow as pa
import pytest

from pendo_assets.pendo.avro import Column, ColumnType
from pendo_assets.pendo.models import ExportManifest
from pendo_assets.pendo.plan import build_sources, plan_day, plan_definitions
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.warehouse.base import SchemaConflict
from pendo_assets.warehouse.bookkeeping import (_DDL, CATALOG, CATALOG_SLICES, LEDGER, SCHEMA, LedgerRow,
                                                cataloged_exports, compact_bookkeeping, ensure_bookkeeping,
                                                exports_for_day, exports_with_definitions, ledger_of_app,
                                                ledger_of_day, ledger_of_definitions, record_manifest, write_ledger)
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.sql import quote_ident
from pendo_assets_tests.builders import export, matched, period

APP = AppLocation("5123", "-323232")
P = date(2024, 4, 7)
OTHER = date(2024, 4, 8)
COLUMNS = [Column("periodId", ColumnType.DATE, pa.date32()), Column("eventId", ColumnType.TEXT, pa.string())]


def batch(day, *ids, extra=None):
    data = {"periodId": pa.array([day] * len(ids), pa.date32()), "eventId": pa.array(ids, pa.string())}
    if extra:
        data[extra] = pa.array(["x"] * len(ids), pa.string())
    return pa.RecordBatch.from_pydict(data)


@pytest.fixture
def warehouse(tmp_path):
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def test_quote_ident_escapes_quotes_and_refuses_empty():
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ValueError):
        quote_ident("")


def test_tables_are_created_from_columns_and_grow_new_nullable_columns(warehouse):
    with warehouse.session() as s:
        assert s.ensure_table(APP.schema_name, "ALLEVENTS", COLUMNS, "f1") == []
        s.insert(APP.schema_name, "ALLEVENTS", batch(P, "a", "b"))
        session_id = Column("sessionId", ColumnType.TEXT, pa.string())
        added = s.ensure_table(APP.schema_name, "ALLEVENTS", [*COLUMNS, session_id], "f2")
        s.insert(APP.schema_name, "ALLEVENTS", batch(P, "c", extra="sessionId"))
    assert added == ["sessionId"]
    with warehouse.session() as s:
        rows = s.query(f'SELECT "eventId", "sessionId" FROM "{APP.schema_name}"."ALLEVENTS" ORDER BY 1')
    assert rows == [("a", None), ("b", None), ("c", "x")]


def test_an_incompatible_type_change_is_refused_naming_file_and_field(warehouse):
    with warehouse.session() as s:
        s.ensure_table(APP.schema_name, "ALLEVENTS", COLUMNS, "f1")
    with pytest.raises(SchemaConflict, match="f2: field 'eventId' is BIGINT"):
        with warehouse.session() as s:
            numeric_id = Column("eventId", ColumnType.INT64, pa.int64())
            s.ensure_table(APP.schema_name, "ALLEVENTS", [COLUMNS[0], numeric_id], "f2")


def test_a_failed_transaction_leaves_the_previous_state(warehouse):
    with warehouse.session() as s:
        s.ensure_table(APP.schema_name, "ALLEVENTS", COLUMNS, "f1")
        s.insert(APP.schema_name, "ALLEVENTS", batch(P, "a", "b"))
    with pytest.raises(RuntimeError):
        with warehouse.session() as s, s.transaction():
            assert s.delete(APP.schema_name, "ALLEVENTS", {"periodId": P}) == 2
            s.insert(APP.schema_name, "ALLEVENTS", batch(P, "c"))
            raise RuntimeError("crash before commit")
    with warehouse.session() as s:
        assert s.count(APP.schema_name, "ALLEVENTS", {"periodId": P}) == 2


def test_delete_with_in_lists_and_empty_lists(warehouse):
    with warehouse.session() as s:
        s.ensure_table(APP.schema_name, "T", COLUMNS, "f")
        s.insert(APP.schema_name, "T", batch(P, "a", "b", "c"))
        assert s.delete(APP.schema_name, "T", {"eventId": ()}) == 0
        assert s.delete(APP.schema_name, "T", {"eventId": ("a", "c")}) == 2
        assert s.count(APP.schema_name, "T", {}) == 1


def test_catalog_keeps_exports_after_they_rotate_out_of_the_manifest(warehouse):
    first = export(1, period(P, 10, matched("Page/a", 3)))
    retro = export(2, period(P, None, matched("Page/a", 0)), retro=True, definitions=(DefinitionTable.PAGES,))
    later = export(40, period(date(2024, 5, 20), 7))
    folders = {1: "datasync/5123/-323232/export1", 2: "datasync/5123/-323232/export2",
               40: "datasync/5123/-323232/export40"}
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        assert record_manifest(s, APP, ExportManifest((first, retro)), folders, "run-1") == [1, 2]
    with warehouse.session() as s:
        assert record_manifest(s, APP, ExportManifest((retro, later)), folders, "run-2") == [40]
        assert record_manifest(s, APP, ExportManifest((retro, later)), folders, "run-3") == []
        cataloged = exports_for_day(s, APP, P)
        with_definitions = exports_with_definitions(s, APP)
    assert [e.counter for e in cataloged] == [1, 2]
    assert plan_day(cataloged, P) == plan_day([first, retro, later], P)
    assert plan_definitions(with_definitions) == plan_definitions([first, retro, later])
    assert plan_day(cataloged, P).tables[EventTable.MATCHEDPAGEEVENTS].slices == ()


def test_a_rewritten_manifest_entry_replaces_the_cataloged_one(warehouse):
    original = export(1, period(P, 10))
    rewritten = export(1, period(P, 12))
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        record_manifest(s, APP, ExportManifest((original,)), {1: "datasync/5123/-323232/a"}, "run-1")
        assert record_manifest(s, APP, ExportManifest((rewritten,)), {1: "datasync/5123/-323232/b"}, "run-2") == [1]
        (entry,) = exports_for_day(s, APP, P)
    assert entry.bom.periods[0].all_events.event_count == 12


def test_an_entry_rewritten_back_to_its_first_folder_reads_as_that_folder_again_and_compacts_to_it(warehouse):
    first, second = export(1, period(P, 10, matched("Page/a", 3))), export(1, period(P, 12))
    folders = ({1: "datasync/5123/-323232/a"}, {1: "datasync/5123/-323232/b"})
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        for entry, folder in ((first, folders[0]), (second, folders[1]), (first, folders[0])):
            assert record_manifest(s, APP, ExportManifest((entry,)), folder, "run") == [1]
        assert plan_day(exports_for_day(s, APP, P), P) == plan_day([first], P)
        assert record_manifest(s, APP, ExportManifest((first,)), folders[0], "run") == []  # known, in folder a
        slices_before = s.count(SCHEMA, CATALOG_SLICES, {})
        # The first and second versions' catalog rows, and their slices (2 and 1).
        assert compact_bookkeeping(s) == 2 + 3
        assert s.count(SCHEMA, CATALOG, {}) == 1 and s.count(SCHEMA, CATALOG_SLICES, {}) == slices_before - 3
        assert plan_day(exports_for_day(s, APP, P), P) == plan_day([first], P)
        assert compact_bookkeeping(s) == 0


def test_bookkeeping_written_before_versions_reads_the_same_once_versioned(warehouse):
    entry = export(1, period(P, 10, matched("Page/a", 3)))
    with warehouse.session() as s:
        s.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}")
        for table in (CATALOG, CATALOG_SLICES):  # as earlier code created them, without `version`
            s.execute(f"CREATE TABLE {quote_ident(SCHEMA)}.{quote_ident(table)} ("
                      + _DDL[table].replace(", version VARCHAR", "") + ")")
        s.execute(f"INSERT INTO {quote_ident(SCHEMA)}.{quote_ident(CATALOG)} (subscription_id, application_id, "
                  "counter, export_folder, root_url, definition_files) VALUES (?, ?, 1, ?, ?, '{}')",
                  [APP.subscription_id, APP.application_id, "datasync/5123/-323232/a", entry.root_url])
        s.execute(f"INSERT INTO {quote_ident(SCHEMA)}.{quote_ident(CATALOG_SLICES)} (subscription_id, "
                  "application_id, counter, period_day, period_index, event_count, files) "
                  "VALUES (?, ?, 1, ?, 0, 10, '[\"allevents.avro\"]')", [APP.subscription_id, APP.application_id, P])
        ensure_bookkeeping(s)
        (cataloged,) = exports_for_day(s, APP, P)
        assert cataloged.bom.periods[0].all_events.event_count == 10
        assert record_manifest(s, APP, ExportManifest((entry,)), {1: "datasync/5123/-323232/a"}, "run") == []


def test_the_catalog_read_back_for_planning_names_the_same_sources_as_the_manifest(warehouse):
    entries = [export(1, period(P, 10, matched("Page/a", 3)), period(OTHER, 5)),
               export(2, period(P, None, matched("Feature/b", 2), matched("Page/a", 0)), retro=True,
                      definitions=(DefinitionTable.FEATURES,)),
               export(3, period(OTHER, None), definitions=())]
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        record_manifest(s, APP, ExportManifest(tuple(entries)), {e.counter: f"f{e.counter}" for e in entries}, "r")
        cataloged = cataloged_exports(s, APP)
    assert build_sources(cataloged) == build_sources(entries)
    assert [e.folder_name for e in cataloged] == [e.folder_name for e in entries]


def test_the_ledger_keeps_one_entry_per_table_day_and_definition_table(warehouse):
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        write_ledger(s, APP, "run-1", [LedgerRow("ALLEVENTS", P, frozenset({(1, "a")}), 10),
                                       LedgerRow("PAGES", None, frozenset({(1, "a")}), 4)])
        write_ledger(s, APP, "run-2", [LedgerRow("ALLEVENTS", P, frozenset({(1, "a"), (2, "b")}), 12),
                                       LedgerRow("PAGES", None, frozenset(), 0)])
        write_ledger(s, AppLocation("5123", "other"), "run-3", [LedgerRow("ALLEVENTS", P, frozenset(), 0)])
        assert ledger_of_app(s, APP) == {("ALLEVENTS", P): frozenset({(1, "a"), (2, "b")}),
                                         ("PAGES", None): frozenset()}
        assert ledger_of_day(s, APP, P) == {"ALLEVENTS": frozenset({(1, "a"), (2, "b")})}
        assert ledger_of_definitions(s, APP) == {"PAGES": frozenset()}
        assert compact_bookkeeping(s) == 2
        assert s.count(SCHEMA, LEDGER, {}) == 3
        assert ledger_of_app(s, APP) == {("ALLEVENTS", P): frozenset({(1, "a"), (2, "b")}),
                                         ("PAGES", None): frozenset()}


def test_a_ledger_written_in_a_failed_load_is_rolled_back_with_it(warehouse):
    with pytest.raises(RuntimeError), warehouse.session() as s:
        ensure_bookkeeping(s)
        with s.transaction():
            write_ledger(s, APP, "run-1", [LedgerRow("ALLEVENTS", P, frozenset({(1, "a")}), 10)])
            raise RuntimeError("the load failed after writing its ledger row")
    with warehouse.session() as s:
        ensure_bookkeeping(s)
        assert ledger_of_app(s, APP) == {}
