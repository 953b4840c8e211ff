"""The embedded default warehouse: one DuckDB file."""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa

from pendo_assets.crash_points import FILE_INSERTED, crash_point
from pendo_assets.errors import UserError
from pendo_assets.pendo.avro import Column, ColumnType, column_fits
from pendo_assets.settings import DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS
from pendo_assets.warehouse.base import DecodedFiles, Replacement, SchemaConflict, SessionTag
from pendo_assets.warehouse.sql import qualified, quote_ident, where_clause

# DuckDB lets one process write a file at a time. Dagster's pool serialises our own runs, so a lock
# held elsewhere (a second CLI, a notebook) is waited for (PENDO_WAREHOUSE_LOCK_WAIT), then reported plainly.
LOCK_WAIT_SECONDS = DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS
# DuckDB's words when another process holds the file, e.g. "Conflicting lock is held in /usr/bin/python3
# (PID 1234)"; the first names the failure, the second who holds it.
LOCK_FAILURE = "Could not set lock on file"
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
# Why a warehouse's folder could not be created, in plain words; other errors keep the system's own.
FOLDER_FAILURES = {FileExistsError: "a file has that name",
                   NotADirectoryError: "part of its path is a file, not a folder"}
# A day is one transaction; past this DuckDB spills its uncommitted rows to disk instead of holding them,
# so memory stays flat however large the day. Measured peak RSS of a load at 4M and 16M rows: 0.77 and
# 1.46 GB with 1 GB here (the small day never reached the cap), 0.79 and 0.82 GB with 384 MB, no slower.
MEMORY_LIMIT = "384MB"
# The Avro decoder process keeps one core busy; DuckDB gets the rest. Measured on 2 cores, a 2M-event
# day loads 10-25 % faster with DuckDB on 1 thread than on 2 competing with the decoder.
THREADS = max(1, (os.cpu_count() or 2) - 1)
TYPES = {ColumnType.TEXT: "VARCHAR", ColumnType.BOOLEAN: "BOOLEAN", ColumnType.INT32: "INTEGER",
         ColumnType.INT64: "BIGINT", ColumnType.FLOAT32: "FLOAT", ColumnType.FLOAT64: "DOUBLE",
         ColumnType.BYTES: "BLOB", ColumnType.DATE: "DATE", ColumnType.TIMESTAMP: "TIMESTAMP",
         ColumnType.JSON: "JSON"}
NEUTRAL_TYPES = {sql: neutral for neutral, sql in TYPES.items()}


class WarehouseLocked(UserError):
    pass


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class DuckDBWarehouse:
    """`notify` hears, once per connection, who holds a locked file and how long it is waited for."""

    def __init__(self, path: str | Path, lock_wait_seconds: float = LOCK_WAIT_SECONDS,
                 memory_limit: str = MEMORY_LIMIT, notify: Callable[[str], None] = print_to_stderr):
        self.path = Path(path).resolve()
        self.memory_limit = memory_limit
        self.url = f"duckdb:///{self.path}"
        self.lock_wait_seconds = lock_wait_seconds
        self.notify = notify

    def connect(self) -> duckdb.DuckDBPyConnection:
        self._create_folder()
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.05
        notified = False
        while True:
            try:
                return duckdb.connect(str(self.path), config={"memory_limit": self.memory_limit,
                                                              "threads": THREADS})
            except duckdb.Error as exc:
                if LOCK_FAILURE not in str(exc):
                    raise UserError(f"cannot open the warehouse {self.path}: {self._open_failure(exc)}; "
                                    "set --warehouse or PENDO_WAREHOUSE to a new or existing DuckDB "
                                    "file") from exc
                holder = _lock_holder(exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLocked(
                        f"the warehouse {self.path} is still held by {holder} after "
                        f"{self.lock_wait_seconds:g} s; close that program (a notebook, a DuckDB shell, "
                        "another sync) and retry, or wait longer with PENDO_WAREHOUSE_LOCK_WAIT") from exc
                if not notified:
                    self.notify(f"the warehouse {self.path} is held by {holder}, "
                                f"waiting up to {self.lock_wait_seconds:g} s for it to let go")
                    notified = True
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)

    def _create_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            cause = FOLDER_FAILURES.get(type(exc), exc.strerror)
            raise UserError(f"cannot create the folder {exc.filename or self.path.parent} for the warehouse "
                            f"{self.path}: {cause}; set --warehouse or PENDO_WAREHOUSE to a path whose "
                            "folder can be created") from exc

    def _open_failure(self, exc: duckdb.Error) -> str:
        if self.path.is_dir():
            return "it is a folder, not a file"
        if "not a valid DuckDB database" in str(exc):
            return "the file is not a DuckDB database"
        return str(exc).removeprefix("IO Error: ")

    @contextmanager
    def session(self, tag: SessionTag | None = None) -> Iterator["DuckDBSession"]:
        """`tag` is not needed: a process's transactions end with it, releasing the file."""
        conn = self.connect()
        try:
            yield DuckDBSession(conn)
        finally:
            conn.close()


def _lock_holder(exc: duckdb.Error) -> str:
    holder = LOCK_HOLDER.search(str(exc))
    return f"{holder['program']} (PID {holder['pid']})" if holder else "another program"


@dataclass(frozen=True)
class _Load:
    replacement: Replacement
    files: DecodedFiles


class DuckDBSession:
    def __init__(self, conn: duckdb.DuckDBPyConnection):
        self.conn = conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.begin()
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def quote(self, name: str) -> str:
        return quote_ident(name)

    def require_open_transaction(self) -> None:
        """DuckDB's DDL is transactional, so nothing ends a transaction early."""

    def abandoned_transactions(self, run_ended: Callable[[str], bool]) -> list[str]:
        """A killed process's transaction ends with it, and its lock on the file with it: none is left open."""
        return []

    @contextmanager
    def staged(self, replacements: Sequence[Replacement], files: DecodedFiles) -> Iterator[list[_Load]]:
        """DuckDB reads the decoded stream inside the transaction: nothing to do before it."""
        yield [_Load(r, files) for r in replacements]

    def load_slices(self, load: "_Load") -> tuple[list[int], int]:
        """Each file's decoded Arrow stream, one INSERT per file, pulled as it decodes: markedly faster than a
        statement per batch."""
        r, rows_per_slice, file_count = load.replacement, [], 0
        for slice_rows in r.slices:
            loaded = self.insert(r.schema, r.table, slice_rows.rows) if slice_rows.rows is not None else 0
            for path in slice_rows.files:
                with load.files.batches(r, slice_rows, path) as (schema, batches):
                    loaded += self.insert(r.schema, r.table, pa.RecordBatchReader.from_batches(schema, batches))
                file_count += 1
                crash_point(FILE_INSERTED)
            rows_per_slice.append(loaded)
        return rows_per_slice, file_count

    def json_value(self, expression: str) -> str:
        return f"to_json({expression})"

    def table_columns(self, schema: str, table: str) -> dict[str, str] | None:
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()
        return {name: data_type for name, data_type in rows} or None

    def ensure_table(self, schema: str, table: str, columns: Sequence[Column], source: str) -> list[str]:
        existing = self.table_columns(schema, table)
        if existing is None:
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            spec = ", ".join(f"{quote_ident(c.name)} {TYPES[c.type]}" for c in columns)
            self.conn.execute(f"CREATE TABLE {qualified(schema, table)} ({spec})")
            return []
        by_lower = {name.lower(): (name, data_type) for name, data_type in existing.items()}
        added = []
        for column in columns:
            if column.name.lower() not in by_lower:
                self.conn.execute(f"ALTER TABLE {qualified(schema, table)} "
                                  f"ADD COLUMN {quote_ident(column.name)} {TYPES[column.type]}")
                added.append(column.name)
                continue
            name, table_type = by_lower[column.name.lower()]
            if table_type not in NEUTRAL_TYPES or not column_fits(column.type, NEUTRAL_TYPES[table_type]):
                raise SchemaConflict(
                    f"{source}: field {column.name!r} is {TYPES[column.type]} in this file, but column "
                    f"{schema}.{table}.{name} is {table_type}; refusing to coerce it. Check the export, "
                    "or migrate the column's type deliberately before reloading.")
        return added

    def insert(self, schema: str, table: str, rows: pa.RecordBatch | pa.Table | pa.RecordBatchReader) -> int:
        columns = ", ".join(quote_ident(name) for name in rows.schema.names)
        self.conn.register("_pendo_rows", rows)
        try:
            return self.conn.execute(f"INSERT INTO {qualified(schema, table)} ({columns}) "
                                     f"SELECT {columns} FROM _pendo_rows").fetchone()[0]
        finally:
            self.conn.unregister("_pendo_rows")

    def delete(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = where_clause(where)
        return self.conn.execute(f"DELETE FROM {qualified(schema, table)}{clause}", params).fetchone()[0]

    def count(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = where_clause(where)
        return self.conn.execute(f"SELECT count(*) FROM {qualified(schema, table)}{clause}", params).fetchone()[0]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, list(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, list(params))
