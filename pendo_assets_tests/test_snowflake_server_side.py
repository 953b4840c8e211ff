"""The server-side Snowflake path, orchestrated for real on fakesnow: the loader plans from the Avro exports and
reads their headers locally, and Snowflake copies the rows from the user's external stage itself.

fakesnow has no Avro COPY and cannot reach a bucket, so its stage is a file:// folder holding the same rows as
Parquet, at the same relative paths, in the raw encodings Snowflake's Avro reader gives a COPY (dates and
timestamps as integers); the COPY statements are the production ones but for FILE_FORMAT = (TYPE = PARQUET).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Iterator

import fastavro
import pytest

from pendo_assets.generator import GeneratedExports, generate
from pendo_assets.loading.loader import LoadError, folders_of, load_day, load_definitions, read_manifest
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse.snowflake_sql import check_statements
from pendo_assets_tests.e2e import END_DAY, assert_warehouse_matches_truth, settings_in
from pendo_assets_tests.parquet_mirror import create_mirror_stage, mirror_as_parquet, mirror_file
from pendo_assets_tests.snowflake_recording import RecordingWarehouse, copies, copy_files, server_side_problems
from pendo_assets_tests.snowflake_server import FakeSnowflakeServer


@dataclass
class ServerSideLoad:
    """A generated export, its Parquet mirror behind a file:// stage, and a warehouse loading through it."""

    generated: GeneratedExports
    store: LocalExportStore
    mirror: Path
    warehouse: RecordingWarehouse
    url: str
    app: AppLocation

    def days(self) -> list[date]:
        return sorted({p.day for e in read_manifest(self.store, self.app).exports for p in e.bom.periods})

    def load_day(self, day: date, reload: bool = False) -> tuple[dict, list[str]]:
        """The day's loads and the statements they ran."""
        start = len(self.warehouse.statements)
        results = load_day(self.store, self.warehouse, self.app, day, list(EventTable), f"run-{day}", reload=reload)
        return results, self.warehouse.statements[start:]


def server_side_load(server: FakeSnowflakeServer, folder: Path, scenario: str = "small") -> ServerSideLoad:
    """The scenario generated under `folder`, mirrored, and a stage over the mirror, as an admin would create one
    over the bucket. Call `server.use_in` first."""
    exports, mirror = folder / "exports", folder / "mirror"
    generated = generate(scenario, exports, end_day=END_DAY)
    mirror_as_parquet(exports, mirror)
    database = server.create_database(folder.name)
    warehouse = RecordingWarehouse(server.target(database), stage=create_mirror_stage(server, database, mirror),
                                   stage_file_format="PARQUET")
    (generated_app,) = generated.apps
    return ServerSideLoad(generated, LocalExportStore(exports), mirror, warehouse, server.url(database),
                          AppLocation(generated_app.subscription_id, generated_app.application_id))


@dataclass
class LoadedScenario:
    load: ServerSideLoad
    statements_by_day: dict[date, list[str]]
    files_by_day: dict[date, int]  # export files the day's tables were replaced from, as the loader counted them
    definition_statements: list[str]


@pytest.fixture(scope="module")
def loaded(snowflake_server: FakeSnowflakeServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[LoadedScenario]:
    """Every day of `small`, then its definitions, loaded through the stage by the real loader."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        snowflake_server.use_in(monkeypatch)
        load = server_side_load(snowflake_server, tmp_path_factory.mktemp("server_side"))
        statements_by_day, files_by_day = {}, {}
        for day in load.days():
            results, statements_by_day[day] = load.load_day(day)
            files_by_day[day] = sum(result.files for result in results.values())
        start = len(load.warehouse.statements)
        load_definitions(load.store, load.warehouse, load.app, list(DefinitionTable), "run-definitions")
        yield LoadedScenario(load, statements_by_day, files_by_day, load.warehouse.statements[start:])


@pytest.mark.slow
def test_the_warehouse_holds_exactly_what_the_exports_mean(loaded, tmp_path):
    # Only read back: a stage matters to loads alone.
    settings = replace(settings_in(tmp_path), warehouse=loaded.load.url, snowflake_stage=None)
    assert_warehouse_matches_truth(settings, loaded.load.generated)


@pytest.mark.slow
def test_every_statement_keeps_snowflakes_load_rules(loaded):
    assert loaded.load.warehouse.statements
    assert check_statements(loaded.load.warehouse.statements) == []


@pytest.mark.slow
def test_snowflake_copied_every_event_file_from_the_users_stage(loaded):
    for day, statements in loaded.statements_by_day.items():
        assert copies(statements) and server_side_problems(statements, loaded.load.warehouse.stage) == [], day
        copied = [path for statement in copies(statements) for path in copy_files(statement)]
        assert len(copied) == len(set(copied)) == loaded.files_by_day[day], day
        assert all((loaded.load.store.root / path).is_file() for path in copied), day
    # Definitions are merged in Python, so they alone travel through a temporary stage.
    assert any(s.startswith("PUT ") for s in loaded.definition_statements)


@pytest.mark.slow
def test_reloading_a_day_replaces_its_rows_rather_than_adding_to_them(loaded, tmp_path):
    load = loaded.load
    day = max(loaded.statements_by_day, key=lambda d: loaded.files_by_day[d])
    as_built = load.load_day(day)[0]
    assert all(result.unchanged for result in as_built.values())  # without reload, the ledger's word is taken
    results, statements = load.load_day(day, reload=True)
    assert not any(result.unchanged for result in results.values())
    # Without FORCE = TRUE the files loaded moments ago would be skipped, and the counts would not match.
    assert len(copies(statements)) == len(copies(loaded.statements_by_day[day]))
    assert {t: r.rows for t, r in results.items()} == {t: r.rows for t, r in as_built.items()}
    settings = replace(settings_in(tmp_path), warehouse=load.url, snowflake_stage=None)
    assert_warehouse_matches_truth(settings, load.generated)


def avro_rows(avro_file: Path) -> int:
    with avro_file.open("rb") as handle:
        return sum(1 for _ in fastavro.reader(handle))


def drop_last_row(avro_file: Path) -> None:
    """Rewrite the file without its last row, so it holds one row fewer than its bill of materials says."""
    with avro_file.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    with avro_file.open("wb") as handle:
        fastavro.writer(handle, schema, records[:-1])


def export_of(load: ServerSideLoad, path: str) -> int:
    """The counter of the export whose folder holds `path`."""
    folders = folders_of(load.app, read_manifest(load.store, load.app).exports, None)
    (counter,) = [counter for counter, folder in folders.items() if path.startswith(f"{folder}/")]
    return counter


def rows_of_the_day(load: ServerSideLoad, day: date) -> dict[str, list[tuple]]:
    """Every event table's rows of `day`, sorted."""
    tables = {}
    with load.warehouse.session() as session:
        for table in EventTable:
            if session.table_columns(load.app.schema_name, table.value) is not None:
                tables[table.value] = sorted(session.query(
                    f"SELECT * FROM {session.quote(load.app.schema_name)}.{session.quote(table.value)} "
                    f"WHERE {session.quote('periodId')} = ?", [day]), key=repr)
    return tables


@pytest.mark.slow
def test_a_file_short_of_its_eventcount_fails_the_reload_naming_it_and_the_day_keeps_its_rows(
        snowflake_server, tmp_path, monkeypatch):
    snowflake_server.use_in(monkeypatch)
    load = server_side_load(snowflake_server, tmp_path)
    day = load.days()[0]
    _, statements = load.load_day(day)
    before = rows_of_the_day(load, day)
    short = next(path for statement in copies(statements) for path in copy_files(statement)
                 if avro_rows(load.store.root / path))
    drop_last_row(load.store.root / short)
    mirror_file(load.store.root / short, load.mirror / short)

    start = len(load.warehouse.statements)
    with pytest.raises(LoadError) as failure:
        load.load_day(day, reload=True)
    message = str(failure.value)
    assert load.app.label in message and f"export {export_of(load, short)}, day {day}" in message, message
    assert short in message and "the bill of materials says eventCount=" in message, message
    failed = load.warehouse.statements[start:]
    begun = max(n for n, statement in enumerate(failed) if statement.startswith("BEGIN"))
    day_transaction = failed[begun:]
    # The COPY from the user's stage ran, and its rows were rolled back with the day's DELETE.
    assert copies(day_transaction) and day_transaction[-1] == "ROLLBACK" and "COMMIT" not in day_transaction
    assert rows_of_the_day(load, day) == before


@pytest.mark.slow
def test_files_of_one_day_that_encode_their_fields_differently_are_each_converted_from_their_own(
        snowflake_server, tmp_path, monkeypatch):
    """mixed-encodings: one day's files mix periodId as a date, ISO text, days and yyyymmdd, and timestamps in
    millis and micros; the COPYs convert each file from its own encoding, so the rows equal the truth."""
    snowflake_server.use_in(monkeypatch)
    load = server_side_load(snowflake_server, tmp_path, "mixed-encodings")
    for day in load.days():
        _, statements = load.load_day(day)
        assert server_side_problems(statements, load.warehouse.stage) == [], day
    load_definitions(load.store, load.warehouse, load.app, list(DefinitionTable), "run-definitions")
    assert any('::NUMBER, 6)' in s for s in copies(load.warehouse.statements))  # micros files were met
    settings = replace(settings_in(tmp_path), warehouse=load.url, snowflake_stage=None)
    assert_warehouse_matches_truth(settings, load.generated)
