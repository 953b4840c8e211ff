"""The server-side Snowflake path, orchestrated for real on fakesnow: the loader plans from the Avro exports and
reads their headers locally, and Snowflake copies the rows from the user's external stage itself.

fakesnow has no Avro COPY and cannot reach a bucket, so its stage is a file:// folder holding the same rows as
Parquet, at the same relative paths, in the raw encodings Snowflake's Avro reader gives a COPY (dates and
timestamps as integers); the COPY statements are the production ones but for FILE_FORMAT = (TYPE = PARQUET).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector

from pendo_assets.generator import GeneratedExports
from pendo_assets.loading.loader import LoadError, folders_of, load_day, load_definitions, read_manifest
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse.snowflake_sql import check_statements, identifier, string_literal
from pendo_assets_tests.e2e import assert_warehouse_matches_truth, generate_small, settings_in
from pendo_assets_tests.snowflake_recording import RecordingWarehouse, copies, copy_files, server_side_problems
from pendo_assets_tests.snowflake_server import FakeSnowflakeServer

STAGE_SCHEMA, STAGE_NAME = "RAW", "EXPORTS"
MATCHABLE_FIELD = "matchableId"
EPOCH_DAY = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_UNITS = {"timestamp-millis": timedelta(milliseconds=1), "timestamp-micros": timedelta(microseconds=1)}
PARQUET_TYPES = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
                  "double": pa.float64(), "string": pa.string(), "bytes": pa.binary(), "enum": pa.string()}


# --- The Parquet mirror of an Avro export tree -------------------------------------------------------------------

def mirror_as_parquet(export_root: Path, mirror_root: Path) -> None:
    """Write every Avro file under `export_root` as Parquet at the same relative path (`.avro` name kept) under
    `mirror_root`, so a COPY names the same files through either stage."""
    for avro_file in export_root.rglob("*.avro"):
        mirror_file(avro_file, mirror_root / avro_file.relative_to(export_root))


def mirror_file(avro_file: Path, parquet_file: Path) -> None:
    """One Avro file's rows as a COPY from an Avro stage sees them: each field in its raw Avro encoding."""
    with avro_file.open("rb") as handle:
        reader = fastavro.reader(handle)
        fields = reader.writer_schema["fields"]
        records = list(reader)
    columns = {f["name"]: raw_values([r[f["name"]] for r in records], f["type"], f["name"]) for f in fields}
    # Snowflake reads an Avro field a file lacks as NULL; fakesnow fails on a Parquet field a file lacks, and a
    # matched slice's COPY reads matchableId (COALESCE with the slice's id) whether or not its files have it.
    columns.setdefault(MATCHABLE_FIELD, pa.nulls(len(records), pa.string()))
    parquet_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), parquet_file)


def raw_values(values: list[Any], avro_type: Any, name: str) -> pa.Array:
    """fastavro's values turned back into the field's Avro encoding: days for a date, integers in the unit for
    a timestamp (fastavro converts logical types as it reads)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"field {name!r}: the mirror has no stand-in for a multi-type union")
        avro_type = branches[0]
    base, logical = (avro_type["type"], avro_type.get("logicalType")) if isinstance(avro_type, dict) \
        else (avro_type, None)
    if logical == "date":
        return pa.array([None if v is None else (v - EPOCH_DAY).days for v in values], pa.int32())
    if logical in TIMESTAMP_UNITS:
        unit = TIMESTAMP_UNITS[logical]
        return pa.array([None if v is None else (v - EPOCH) // unit for v in values], pa.int64())
    if logical is None and base in PARQUET_TYPES:
        return pa.array(values, PARQUET_TYPES[base])
    # A record, map or array arrives in an Avro COPY as an OBJECT or ARRAY, which JSON text would not stand
    # for; the generator writes none, so none is mirrored.
    raise ValueError(f"field {name!r}: the mirror has no stand-in for Avro type {avro_type!r}")


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


def server_side_load(server: FakeSnowflakeServer, folder: Path) -> ServerSideLoad:
    """The `small` scenario generated under `folder`, mirrored, and a stage over the mirror, as an admin would
    create one over the bucket. Call `server.use_in` first."""
    exports, mirror = folder / "exports", folder / "mirror"
    generated = generate_small(exports)
    mirror_as_parquet(exports, mirror)
    database = server.create_database(folder.name)
    with closing(snowflake.connector.connect(**server.connect_args(), database=database)) as connection:
        cursor = connection.cursor()
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(STAGE_SCHEMA)}")
        cursor.execute(f"CREATE STAGE {identifier(database)}.{identifier(STAGE_SCHEMA)}.{identifier(STAGE_NAME)} "
                       f"URL={string_literal(f'file://{mirror}/')}")
    warehouse = RecordingWarehouse(server.target(database), stage=f"{database}.{STAGE_SCHEMA}.{STAGE_NAME}",
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
    day_transaction = failed[len(failed) - 1 - failed[::-1].index("BEGIN"):]
    # The COPY from the user's stage ran, and its rows were rolled back with the day's DELETE.
    assert copies(day_transaction) and day_transaction[-1] == "ROLLBACK" and "COMMIT" not in day_transaction
    assert rows_of_the_day(load, day) == before
