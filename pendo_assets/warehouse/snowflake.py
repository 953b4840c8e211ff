"""Snowflake: the warehouse for data that outgrows one machine, in Pendo's native schema and table names.

A day is loaded by COPY, never row by row through Python. Two data paths, chosen per load:
- server-side: the exports sit in a bucket under an external stage the user named (PENDO_SNOWFLAKE_STAGE), so
  Snowflake reads the Avro files itself; no event data passes through this process;
- staged: otherwise, the decoded rows are written as Parquet in bounded parts, PUT to a temporary stage before
  the transaction, and copied from there.
Either way: BEGIN; delete the day; COPY; check every file LOADED whole and the shared checks; COMMIT. Any error
rolls back first (Snowflake keeps a transaction open after a failed statement), then the connection is closed.
"""

from __future__ import annotations

import tempfile
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pendo_assets.crash_points import FILE_INSERTED, LOAD_LOG_WRITTEN, TABLE_REPLACED, crash_point
from pendo_assets.pendo.avro import Column, column_fits
from pendo_assets.warehouse import scopes
from pendo_assets.warehouse.base import Bookkeeping, DecodedFiles, Replaced, Replacement, SchemaConflict
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA
from pendo_assets.warehouse.checks import CheckFailed, check_replaced
from pendo_assets.warehouse.snowflake_config import SnowflakeTarget
from pendo_assets.warehouse.snowflake_sql import (SNOWFLAKE_TYPES, StagePath, add_column, copy_from_stage,
                                                  copy_staged, create_schema, create_table, create_temporary_stage,
                                                  identifier, neutral_type, put_file, staged_parquet_schema)
from pendo_assets.warehouse.sql import where_clause

if TYPE_CHECKING:
    from dagster_snowflake import SnowflakeResource

# Rows per staged Parquet part: a part is written, PUT and deleted before the next, so disk and memory stay flat.
STAGED_PART_ROWS = 1_000_000
# The staged path's temporary stage: in the bookkeeping schema (a stage needs one; app schema names need
# quoting, which stage names here do not take), named per session since fakesnow shares them across sessions.
LOAD_STAGE_SCHEMA, LOAD_STAGE_PREFIX = BOOKKEEPING_SCHEMA, "LOAD_"


class SnowflakeWarehouse:
    """`resource`: dagster-snowflake's resource as a run resolved it; without it, the target resolves its own.
    `stage_file_format`: what the stage's files are; only tests change it (fakesnow reads no Avro)."""

    def __init__(self, target: SnowflakeTarget, stage: str | None = None, resource: SnowflakeResource | None = None,
                 stage_file_format: str = "AVRO"):
        self.target, self.stage, self.resource = target, stage, resource
        self.stage_file_format = stage_file_format
        self.url = target.describe()

    @contextmanager
    def session(self) -> Iterator["SnowflakeSession"]:
        with self.target.connect(self.resource) as conn:
            yield SnowflakeSession(conn, self.stage, self.stage_file_format)


@dataclass
class _Load:
    """A replacement ready to run in the transaction: its COPY statements, and how files map to slices."""

    replacement: Replacement
    statements: list[str]
    slice_of_file: dict[str, int]  # a file's path relative to its stage folder -> its slice
    staged_rows: list[int] | None  # rows written per slice when staged; None when Snowflake reads the files
    files: int


class SnowflakeSession:
    def __init__(self, conn: Any, stage: str | None, stage_file_format: str = "AVRO"):
        self.conn, self.stage, self.stage_file_format = conn, stage, stage_file_format
        self.cursor = conn.cursor()
        self.load_stage: str | None = None

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(sql, [_bindable(p) for p in params] or None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._run("BEGIN")
        try:
            yield
        except BaseException:
            # Snowflake keeps the transaction open after a failed statement. If ROLLBACK fails too (the connection
            # is gone), the session's end discards the transaction, and the first error is the one to report.
            with suppress(Exception):
                self._run("ROLLBACK")
            raise
        self._run("COMMIT")

    def quote(self, name: str) -> str:
        return identifier(name)

    def json_value(self, expression: str) -> str:
        return f"TO_VARIANT({expression})"

    def table_columns(self, schema: str, table: str) -> dict[str, str] | None:
        rows = self._run("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                         [schema.upper(), table.upper()]).fetchall()
        return {name: data_type for name, data_type in rows} or None

    def ensure_table(self, schema: str, table: str, columns: Sequence[Column], source: str) -> list[str]:
        existing = self.table_columns(schema, table)
        if existing is None:
            self._run(create_schema(schema))
            self._run(create_table(schema, table, columns))
            return []
        added = []
        for column in columns:
            table_type = existing.get(column.name.upper())
            if table_type is None:
                self._run(add_column(schema, table, column))
                added.append(column.name)
                continue
            neutral = neutral_type(table_type)
            if neutral is None or not column_fits(column.type, neutral):
                raise SchemaConflict(
                    f"{source}: field {column.name!r} is {SNOWFLAKE_TYPES[column.type]} in this file, but column "
                    f"{schema}.{table}.{column.name.upper()} is {table_type}; refusing to coerce it. Check the "
                    "export, or migrate the column's type deliberately before reloading.")
        return added

    def replace(self, replacements: Sequence[Replacement], files: DecodedFiles,
                bookkeeping: Bookkeeping) -> list[Replaced]:
        with tempfile.TemporaryDirectory(prefix="pendo-datasync-") as scratch:
            loads = [self._prepare(index, r, files, Path(scratch)) for index, r in enumerate(replacements)]
        with self.transaction():
            replaced = []
            for load in loads:
                r = load.replacement
                scopes.clear(self, r)
                loaded = [scopes.derive(self, r)] if r.unpivot is not None else [0] * len(r.slices)
                if load.statements:  # names are qualified, but fakesnow's COPY wants a current schema too
                    self._run(f"USE SCHEMA {identifier(r.schema)}")
                for statement in load.statements:
                    for result in self._run(statement).fetchall():
                        loaded[_slice_of(load.slice_of_file, result)] += _rows_loaded(r, result)
                    crash_point(FILE_INSERTED)
                if load.staged_rows is not None and loaded != load.staged_rows:
                    raise CheckFailed(f"{r.describe}: {sum(load.staged_rows)} rows were staged but COPY loaded "
                                      f"{sum(loaded)}")
                replaced.append(Replaced(r, loaded, load.files))
                crash_point(TABLE_REPLACED)
            for r in replacements:
                scopes.settle(self, r)
            check_replaced(self, replaced)
            bookkeeping(self, replaced)
            crash_point(LOAD_LOG_WRITTEN)
        return replaced

    def _prepare(self, index: int, r: Replacement, files: DecodedFiles, scratch: Path) -> _Load:
        """Everything that must happen before BEGIN: the COPY statements, and for the staged path the PUTs."""
        if r.unpivot is not None:  # derived from rows this load copies; nothing of its own to stage or copy
            return _Load(r, [], {}, None, 0)
        paths = [path for s in r.slices for path in s.files]
        # A replacement without files (a day that only deletes a table's rows) stays here too: it copies nothing,
        # so it needs no temporary stage.
        if self.stage and all(s.rows is None for s in r.slices):
            # One COPY (per 1,000 files) per slice: each slice fills its own matchableId.
            statements = [statement for s in r.slices if s.files
                          for statement in copy_from_stage(r.schema, r.table, r.columns, self.stage, s.files, s.fill,
                                                           file_format=self.stage_file_format)]
            return _Load(r, statements, {path: i for i, s in enumerate(r.slices) for path in s.files}, None,
                         len(paths))
        return self._stage_rows(index, r, files, scratch)

    def _stage_rows(self, index: int, r: Replacement, files: DecodedFiles, scratch: Path) -> _Load:
        """The replacement's rows as Parquet parts in a fresh folder of the load's temporary stage."""
        prefix = f"{uuid.uuid4().hex}-{index}"
        schema = staged_parquet_schema(r.columns)
        staged_rows, slice_of_file, parts = [], {}, 0

        def put(batches: Iterator[pa.RecordBatch | pa.Table], slice_index: int) -> int:
            nonlocal parts
            rows, writer, part_rows, local = 0, None, 0, None
            for batch in batches:
                if writer is None:
                    local = scratch / f"part-{parts:06d}.parquet"
                    writer = pq.ParquetWriter(local, schema)
                    parts += 1
                writer.write_table(_conformed(batch, r.columns, schema))
                rows += batch.num_rows
                part_rows += batch.num_rows
                if part_rows >= STAGED_PART_ROWS:
                    self._put(writer, local, prefix, slice_of_file, slice_index)
                    writer, part_rows = None, 0
            if writer is not None:
                self._put(writer, local, prefix, slice_of_file, slice_index)
            return rows

        file_count = 0
        for slice_index, s in enumerate(r.slices):
            rows = put(iter([s.rows]), slice_index) if s.rows is not None and s.rows.num_rows else 0
            for path in s.files:
                with files.batches(r, s, path) as (_, batches):
                    rows += put(batches, slice_index)
                file_count += 1
            staged_rows.append(rows)
        statements = ([copy_staged(r.schema, r.table, r.columns, StagePath(self._load_stage(), prefix))]
                      if slice_of_file else [])
        return _Load(r, statements, slice_of_file, staged_rows, file_count)

    def _load_stage(self) -> str:
        """Created at the first PUT, so a load that only deletes needs no stage; temporary, so Snowflake drops it
        with the session."""
        if self.load_stage is None:
            self.load_stage = f"{LOAD_STAGE_SCHEMA}.{LOAD_STAGE_PREFIX}{uuid.uuid4().hex.upper()}"
            self._run(create_schema(LOAD_STAGE_SCHEMA))
            self._run(create_temporary_stage(self.load_stage))
        return self.load_stage

    def _put(self, writer: pq.ParquetWriter, local: Path, prefix: str, slice_of_file: dict[str, int],
             slice_index: int) -> None:
        writer.close()
        self._run(put_file(local, StagePath(self._load_stage(), prefix)))
        slice_of_file[local.name] = slice_index
        local.unlink()

    def insert(self, schema: str, table: str, rows: pa.RecordBatch | pa.Table | pa.RecordBatchReader) -> int:
        """Bookkeeping rows, bound as parameters (a few per load); event rows go through COPY."""
        table_rows = rows.read_all() if isinstance(rows, pa.RecordBatchReader) else rows
        if not table_rows.num_rows:
            return 0
        names = table_rows.schema.names
        self.cursor.executemany(
            f"INSERT INTO {identifier(schema)}.{identifier(table)} ({', '.join(identifier(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [[_bindable(v) for v in row.values()] for row in table_rows.to_pylist()])
        return table_rows.num_rows

    def delete(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = where_clause(where, identifier)
        return self._run(f"DELETE FROM {identifier(schema)}.{identifier(table)}{clause}", params).fetchone()[0]

    def count(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = where_clause(where, identifier)
        return self._run(f"SELECT count(*) FROM {identifier(schema)}.{identifier(table)}{clause}",
                         params).fetchone()[0]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(row) for row in self._run(sql, params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._run(sql, params)


def _bindable(value: Any) -> Any:
    """Dates and times travel as ISO text, which Snowflake casts on comparison and insert: the connector's own
    binding of them (epoch milliseconds) is not understood by every server (fakesnow)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _conformed(batch: pa.RecordBatch | pa.Table, columns: Sequence[Column], schema: pa.Schema) -> pa.Table:
    """A decoded batch in the staged layout (`staged_parquet_schema`): every column by position, dates and times
    as numbers."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    by_lower = {name.lower(): name for name in table.column_names}
    arrays = []
    for column, field in zip(columns, schema):
        name = by_lower.get(column.name.lower())
        if name is None:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        values = table.column(name)
        if pa.types.is_date32(values.type):
            values = values.cast(pa.int32())
        elif pa.types.is_timestamp(values.type):
            values = values.cast(pa.int64())
        arrays.append(values.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _slice_of(slice_of_file: dict[str, int], result: tuple) -> int:
    """The slice of a COPY result's file, which Snowflake names by its whole stage path or URL."""
    parts = str(result[0]).split("/")
    for start in range(len(parts)):
        found = slice_of_file.get("/".join(parts[start:]))
        if found is not None:
            return found
    raise CheckFailed(f"COPY reported a file it was not asked to load: {result[0]}")


def _rows_loaded(r: Replacement, result: tuple) -> int:
    """A COPY result row: file, status, rows_parsed, rows_loaded, ...; anything but a whole LOADED file fails."""
    file, status, parsed, loaded = result[:4]
    if status != "LOADED" or parsed != loaded:
        first_error = result[6] if len(result) > 6 else None
        raise CheckFailed(f"{r.describe}: COPY of {file} ended {status} with {loaded} of {parsed} rows loaded"
                          + (f" ({first_error})" if first_error else ""))
    return int(loaded)
