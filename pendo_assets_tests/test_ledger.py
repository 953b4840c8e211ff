"""The warehouse is the record of what is loaded: rebuild it, replace it or restore an older copy, and the
next `pendo-datasync sync` loads exactly what it lacks, whatever the Dagster instance remembers.

`out_of_date` is first tested directly against a real DuckDB file. Then each end-to-end case runs the real
CLI (in this process, with DAGSTER_HOME kept between syncs) and compares the warehouse with the generator's
truth; which table-days a sync rebuilt is read from the warehouse's ledger.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from contextlib import redirect_stdout
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pendo_assets import cli
from pendo_assets.defs.assets import RELOAD_TAG, table_key
from pendo_assets.definitions import build_definitions
from pendo_assets.loading.ledger import out_of_date
from pendo_assets.pendo.models import ExportManifest
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.settings import Settings
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse.bookkeeping import (LEDGER, LOAD_LOG, SCHEMA, LedgerRow, ensure_bookkeeping,
                                                record_manifest, write_ledger)
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets_tests.builders import APP_URL, export, matched, period
from pendo_assets_tests.e2e import STEPS, assert_warehouse_matches_truth, generate_small, settings_in, tick_and_run

APP = AppLocation("1", "-323232")
P, OTHER = date(2024, 4, 7), date(2024, 4, 8)


def test_out_of_date_names_what_the_ledger_lacks_from_the_catalog_and_the_manifest(tmp_path):
    store, warehouse = LocalExportStore(tmp_path), DuckDBWarehouse(tmp_path / "w.duckdb")
    first = export(1, period(P, 10, matched("Page/a", 3)), definitions=(DefinitionTable.PAGES,))
    retro = export(2, period(P, None, matched("Feature/b", 2)), retro=True, definitions=())
    with warehouse.session() as session:  # export 1 rotated out of the manifest: only the catalog knows it
        ensure_bookkeeping(session)
        record_manifest(session, APP, ExportManifest((first,)), {1: f"{APP.folder}/export1"}, "r")

    pending = out_of_date(store, warehouse, APP, ExportManifest((retro,)))
    assert pending.days == {**{(t, P): frozenset({1}) for t in EventTable},
                            (EventTable.MATCHEDFEATUREEVENTS, P): frozenset({1, 2})}
    assert pending.definitions == {DefinitionTable.PAGES: frozenset({1})}

    with warehouse.session() as session:
        write_ledger(session, APP, "r", [
            LedgerRow("ALLEVENTS", P, frozenset({(1, "export1")}), 10),
            LedgerRow("MATCHEDFEATUREEVENTS", P, frozenset({(1, "export1")}), 0),  # built before export 2
            LedgerRow("PAGES", None, frozenset({(1, "export1")}), 4)])
    pending = out_of_date(store, warehouse, APP, ExportManifest((retro,)))
    assert set(pending.days) == {(EventTable.MATCHEDPAGEEVENTS, P), (EventTable.MATCHEDTRACKTYPEEVENTS, P),
                                 (EventTable.MATCHEDFEATUREEVENTS, P)}
    assert pending.definitions == {}

    redelivered = replace(first, root_url=f"{APP_URL}/export1-again")  # a rewritten manifest: same counter
    pending = out_of_date(store, warehouse, APP, ExportManifest((redelivered, retro)))
    assert (EventTable.ALLEVENTS, P) in pending.days and DefinitionTable.PAGES in pending.definitions


MATCHED_TABLE_OF_TYPE = {"Page": "MATCHEDPAGEEVENTS", "Feature": "MATCHEDFEATUREEVENTS",
                         "TrackType": "MATCHEDTRACKTYPEEVENTS"}
DEFINITION_TABLE_OF_KEY = {"pageDefinitionsFile": "PAGES", "featureDefinitionsFile": "FEATURES",
                           "trackTypeDefinitionsFile": "TRACKTYPES", "guideDefinitionsFile": "GUIDES"}
Ledger = dict[tuple[str, date | None], tuple[str, str]]  # (table, day) -> (built_from, run_id)


@dataclass(frozen=True)
class Synced:
    """A bucket synced as of the first step (warehouse copy kept), then as of the second, in one instance."""

    root: Path
    older_warehouse: Path
    first_manifest: list[dict]
    generated: object

    @property
    def settings(self) -> Settings:
        return settings_in(self.root)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"


def sync(settings: Settings) -> str:
    with redirect_stdout(io.StringIO()) as output:
        code = cli.main(["sync", "--exports", settings.exports, "--warehouse", settings.warehouse])
    assert code == 0, output.getvalue()
    return output.getvalue()


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PENDO_FIRST_DAY", "2024-01-01")


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    root = tmp_path_factory.mktemp("synced")
    (root / "dagster_home").mkdir()
    settings = settings_in(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_home(monkeypatch, root / "dagster_home")
        generate_small(settings.exports, as_of=STEPS[0])
        sync(settings)
        shutil.copyfile(settings.warehouse, root / "older.duckdb")
        first_manifest = manifest_entries(settings)
        generated = generate_small(settings.exports, as_of=STEPS[1])
        sync(settings)
    assert_warehouse_matches_truth(settings, generated)
    return Synced(root, root / "older.duckdb", first_manifest, generated)


@pytest.fixture
def case(synced: Synced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Synced:
    """A private copy of the synced bucket, warehouse and Dagster instance, with DAGSTER_HOME pointing at it."""
    shutil.copytree(synced.root, tmp_path / "case")
    copy = replace(synced, root=tmp_path / "case", older_warehouse=tmp_path / "case" / "older.duckdb")
    use_home(monkeypatch, copy.home)
    return copy


def manifest_entries(settings: Settings) -> list[dict]:
    (manifest,) = Path(settings.exports).glob("datasync/*/*/exportmanifest.json")
    return json.loads(manifest.read_text())["exports"]


def read_ledger(warehouse: str | Path) -> Ledger:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(f'SELECT table_name, period_day, built_from, run_id FROM "{SCHEMA}"."{LEDGER}" '
                            "QUALIFY ROW_NUMBER() OVER (PARTITION BY application_id, table_name, period_day "
                            "ORDER BY loaded_at DESC, run_id DESC) = 1").fetchall()
    return {(table, day): (built_from, run_id) for table, day, built_from, run_id in rows}


def rebuilt(before: Ledger, after: Ledger) -> set[tuple[str, date | None]]:
    """The table-days a sync wrote: new ledger entries, or entries now written by another run."""
    return {key for key, (_, run_id) in after.items() if key not in before or before[key][1] != run_id}


def built_from(ledger: Ledger) -> dict[tuple[str, date | None], str]:
    return {key: sources for key, (sources, _) in ledger.items()}


def touched_by(entries: list[dict]) -> set[tuple[str, date | None]]:
    """From the raw manifest: the table-days and definition tables these exports mention."""
    touched: set[tuple[str, date | None]] = set()
    for entry in entries:
        touched |= {(DEFINITION_TABLE_OF_KEY[key], None) for key in entry if key in DEFINITION_TABLE_OF_KEY}
        for block in entry.get("timeDependent", []):
            day = date.fromisoformat(block["periodId"][:10])
            tables = [t.value for t in EventTable] if "allEvents" in block else []
            tables += [MATCHED_TABLE_OF_TYPE[m["type"]] for m in block.get("matchedEvents", [])]
            touched |= {(table, day) for table in tables}
    return touched


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_deleted_warehouse_is_rebuilt_whole_by_the_next_sync(case):
    every_table_day = read_ledger(case.settings.warehouse)
    Path(case.settings.warehouse).unlink()

    output = sync(case.settings)

    assert f"{len([k for k in every_table_day if k[1]])} table-day(s) and 4 definition table(s) to build" in output
    assert built_from(read_ledger(case.settings.warehouse)) == built_from(every_table_day)
    assert_warehouse_matches_truth(case.settings, case.generated)


@pytest.mark.slow
def test_a_second_empty_warehouse_under_the_same_instance_is_filled_and_the_first_left_untouched(case):
    first = Path(case.settings.warehouse)
    digest = file_digest(first)
    second = replace(case.settings, warehouse=str(case.root / "second.duckdb"))

    sync(second)

    assert_warehouse_matches_truth(second, case.generated)
    assert built_from(read_ledger(second.warehouse)) == built_from(read_ledger(first))
    assert file_digest(first) == digest


@pytest.mark.slow
def test_a_restored_older_copy_gets_exactly_the_table_days_and_definitions_newer_exports_changed(case):
    current = read_ledger(case.settings.warehouse)
    shutil.copyfile(case.older_warehouse, case.settings.warehouse)
    older = read_ledger(case.settings.warehouse)
    first_counters = {e["counter"] for e in case.first_manifest}
    new_entries = [e for e in manifest_entries(case.settings) if e["counter"] not in first_counters]
    changed = touched_by(new_entries)
    assert any(day for _, day in changed & older.keys()), "the new exports re-export days the older copy holds"
    assert any(day is None for _, day in changed), "the new exports carry definitions"

    sync(case.settings)

    after = read_ledger(case.settings.warehouse)
    assert rebuilt(older, after) == changed
    assert built_from(after) == built_from(current)
    assert_warehouse_matches_truth(case.settings, case.generated)


@pytest.mark.slow
def test_an_up_to_date_warehouse_gets_no_run_from_sync_or_from_the_sensor(case):
    before = read_ledger(case.settings.warehouse)

    output = sync(case.settings)

    assert "0 table-day(s) and 0 definition table(s) to build, 0 run(s) to do" in output
    assert read_ledger(case.settings.warehouse) == before
    with dg.DagsterInstance.get() as instance:
        assert tick_and_run(case.settings, instance, {}) == []


def last_day_with_events(synced: Synced) -> date:
    return max(day for day, ids in synced.generated.apps[0].truth.allevents.items() if ids)


@pytest.mark.slow
def test_a_run_leaves_what_the_warehouse_already_holds_from_the_same_exports_unless_asked_to_reload(case):
    app = AppLocation(case.generated.apps[0].subscription_id, case.generated.apps[0].application_id)
    day = last_day_with_events(case).isoformat()
    job = build_definitions(case.settings).resolve_implicit_global_asset_job_def()
    allevents = table_key(app, EventTable.ALLEVENTS.value)

    def backfill(tags: dict[str, str]) -> tuple[dg.ExecuteInProcessResult, int]:
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(instance=instance, partition_key=day, asset_selection=[allevents],
                                            tags=tags, raise_on_error=False)
        with duckdb.connect(case.settings.warehouse, read_only=True) as conn:
            (logged,), = conn.execute(f'SELECT count(*) FROM "{SCHEMA}"."{LOAD_LOG}" WHERE run_id = ?',
                                      [result.run_id]).fetchall()
        return result, logged

    def load_of(result: dg.ExecuteInProcessResult) -> str:
        (event,) = result.get_asset_materialization_events()
        return event.materialization.metadata["pendo/load"].value

    kept, kept_logged = backfill({})
    reloaded, reloaded_logged = backfill({RELOAD_TAG: "true"})

    assert kept.success and reloaded.success
    assert load_of(kept).startswith("unchanged") and kept_logged == 0
    assert load_of(reloaded) == "replaced" and reloaded_logged > 0
    assert all(e.passed for r in (kept, reloaded) for e in r.get_asset_check_evaluations())
    assert_warehouse_matches_truth(case.settings, case.generated)


@pytest.mark.slow
def test_a_run_loads_a_day_dagster_remembers_but_the_warehouse_lacks(case):
    app = AppLocation(case.generated.apps[0].subscription_id, case.generated.apps[0].application_id)
    day = last_day_with_events(case)
    Path(case.settings.warehouse).unlink()
    job = build_definitions(case.settings).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, partition_key=day.isoformat(),
                                        asset_selection=[table_key(app, EventTable.ALLEVENTS.value)])

    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["pendo/load"].value == "replaced"
    assert event.materialization.metadata["dagster/row_count"].value == len(
        case.generated.apps[0].truth.allevents[day])
