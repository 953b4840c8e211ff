"""Snowflake: the warehouse for data that outgrows one machine, in Pendo's native schema and table names.

A day is loaded by COPY, never row by row through Python. Two data paths, chosen per load:
- server-side: the exports sit in a bucket under an external stage the user named (PENDO_SNOWFLAKE_STAGE), so
  Snowflake reads the Avro files itself; no event data passes through this process;
- staged: otherwise, the decoded rows are written as Parquet in bounded parts, PUT to a temporary stage before
  the transaction (each part's PUT overlapping the writing of the next), and copied from there.
Either way the statements grow with files, not with matchables: one COPY per table per 1,000 files alike.
The recipe around them (DDL first; BEGIN; clear, COPY, checks, bookkeeping; COMMIT) is `warehouse.load`'s. Any
error rolls back first (Snowflake keeps a transaction open after a failed statement), then the connection closes.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pendo_assets.crash_points import FILE_INSERTED, crash_point
from pendo_assets.errors import UserError
from pendo_assets.pendo.avro import Column, ColumnType, column_fits
from pendo_assets.warehouse.base import (DecodedFiles, Replacement, SchemaConflict, SessionTag, TransactionLost)
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA
from pendo_assets.warehouse.checks import CheckFailed
from pendo_assets.warehouse.snowflake_config import SnowflakeTarget
from pendo_assets.warehouse.snowflake_sql import (SNOWFLAKE_TYPES, StagedFile, StagePath, add_column,
                                                  copy_from_stage, copy_staged, create_schema, create_table,
                                                  create_temporary_stage, identifier, insert_json, neutral_type,
                                                  put_file, staged_parquet_schema, string_literal)
from pendo_assets.warehouse.sql import where_clause

if TYPE_CHECKING:
    from dagster_snowflake import SnowflakeResource

# Rows per staged Parquet part: parts roll across files and slices, so a day of thousands of small matched files
# still makes a few parts; at most two are on disk at once (one being PUT, one being written).
STAGED_PART_ROWS = 1_000_000
# The staged path's temporary stage: in the bookkeeping schema (a stage needs one; app schema names need
# quoting, which stage names here do not take), named per session since fakesnow shares them across sessions.
LOAD_STAGE_SCHEMA, LOAD_STAGE_PREFIX = BOOKKEEPING_SCHEMA, "LOAD_"
# Rows per INSERT of bookkeeping rows bound as one JSON value: a few MB of text at most.
INSERT_ROWS_PER_STATEMENT = 5_000
# Load transactions are named after their run, so `SHOW TRANSACTIONS` tells whose each is, and a sync can end
# those a dead run left open (`abandoned_transactions`).
TRANSACTION_PREFIX = "PENDO_"
QUERY_TAG_PRODUCT = "pendo-datasync"
# Snowflake's words when a statement gave up waiting for a lock another transaction holds.
LOCK_WAIT_FAILURE = re.compile(r"lock|waiters", re.IGNORECASE)


class LockWaitTimedOut(UserError):
    """A load waited LOCK_TIMEOUT for a table another transaction holds; the message names that transaction."""


class SnowflakeWarehouse:
    """`resource`: dagster-snowflake's resource as a run resolved it; without it, the target resolves its own.
    `stage_file_format`: what the stage's files are; only tests change it (fakesnow reads no Avro)."""

    def __init__(self, target: SnowflakeTarget, stage: str | None = None, resource: SnowflakeResource | None = None,
                 stage_file_format: str = "AVRO"):
        self.target, self.stage, self.resource = target, stage, resource
        self.stage_file_format = stage_file_format
        self.url = target.describe()

    @contextmanager
    def session(self, tag: SessionTag | None = None) -> Iterator["SnowflakeSession"]:
        with self.target.connect(self.resource) as conn:
            yield SnowflakeSession(conn, self.stage, self.stage_file_format, tag)


def transaction_name(run_id: str) -> str:
    """A load transaction's name: the prefix and the run id, as an identifier's letters, digits and underscores."""
    return TRANSACTION_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", run_id)[:200].upper()


def query_tag(tag: SessionTag | None) -> str:
    """What QUERY_TAG says of a session: the product, and the app and run it works for."""
    return json.dumps({"product": QUERY_TAG_PRODUCT, **({"owner": tag.owner, "run": tag.run_id} if tag else {})})


@dataclass
class _Load:
    """A replacement ready to run in the transaction: its COPY statements and how their files map to slices (the
    server-side path), or the rows it staged per slice (the staged path)."""

    replacement: Replacement
    statements: list[str]
    files: int
    slice_of_file: dict[str, int] = field(default_factory=dict)
    staged_rows: list[int] | None = None


@dataclass(frozen=True)
class OpenTransaction:
    """A row of SHOW TRANSACTIONS."""

    id: str
    name: str
    session: str
    started_on: str


class SnowflakeSession:
    def __init__(self, conn: Any, stage: str | None, stage_file_format: str = "AVRO", tag: SessionTag | None = None):
        self.conn, self.stage, self.stage_file_format, self.tag = conn, stage, stage_file_format, tag
        self.cursor = conn.cursor()
        self.load_stage: str | None = None
        self.transaction_id: str | None = None
        # Columns of existing tables, by (schema, table) upper-cased: a load asks for them several times per table.
        self._columns: dict[tuple[str, str], dict[str, str]] = {}
        # Set per session, not only at login: the connector writes what the server answers into the parameters it
        # was given, which dagster-snowflake passes to every later connection, so a tag would outlive its session.
        self._run(f"ALTER SESSION SET QUERY_TAG = {string_literal(query_tag(tag))}")

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(sql, [_bindable(p) for p in params] or None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._run(f"BEGIN TRANSACTION NAME {identifier(transaction_name(self.tag.run_id))}" if self.tag else "BEGIN")
        self.transaction_id = self._current_transaction()
        try:
            yield
            self.require_open_transaction()
        except BaseException as error:
            # Snowflake keeps the transaction open after a failed statement. If ROLLBACK fails too (the connection
            # is gone), the session's end discards the transaction, and the first error is the one to report.
            with suppress(Exception):
                self._run("ROLLBACK")
            self.transaction_id = None
            blocked = self._lock_wait_failure(error)
            if blocked is not None:
                raise blocked from error
            raise
        self._run("COMMIT")
        self.transaction_id = None

    def require_open_transaction(self) -> None:
        """Snowflake commits the open transaction when a statement inside it is DDL (a connector's own included),
        and runs what follows on its own; CURRENT_TRANSACTION() then no longer names the one BEGIN started."""
        current = self._current_transaction()
        if self.transaction_id is None or current != self.transaction_id:
            raise TransactionLost(
                f"Snowflake ended the load's transaction {self.transaction_id} before its end (now: {current}): a "
                "statement inside it committed it, as DDL does. What ran before that is committed; the ledger was "
                "not written, so the next sync loads it again")

    def _current_transaction(self) -> str | None:
        (current,) = self._run("SELECT CURRENT_TRANSACTION()").fetchone()
        return None if current is None else str(current)

    def _lock_wait_failure(self, error: BaseException) -> LockWaitTimedOut | None:
        """A statement that gave up waiting for a lock, explained: which transactions hold this user's locks, and
        how to end one whose process is gone."""
        from snowflake.connector.errors import ProgrammingError

        if not isinstance(error, ProgrammingError) or not LOCK_WAIT_FAILURE.search(str(error)):
            return None
        others = [t for t in self.open_transactions() if t.session != str(self.conn.session_id)]
        held = "; ".join(f"transaction {t.id} ({t.name or 'unnamed'}, session {t.session}, started {t.started_on})"
                         for t in others) or "a transaction of another user"
        first_line = (str(error).strip().splitlines() or [""])[0]
        return LockWaitTimedOut(
            f"Snowflake gave up waiting for a table another transaction holds ({first_line}); held by {held}. If its "
            "process is gone (a killed run), `pendo-datasync sync` aborts the transactions of dead runs, or end it "
            "with SELECT SYSTEM$ABORT_TRANSACTION(<id>); otherwise wait for it and retry. LOCK_TIMEOUT is the "
            "warehouse URL's lock_timeout= (seconds)")

    def open_transactions(self) -> list[OpenTransaction]:
        """The user's open transactions, as SHOW TRANSACTIONS lists them."""
        cursor = self._run("SHOW TRANSACTIONS")
        names = [d[0].lower() for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        return [OpenTransaction(str(r.get("id")), str(r.get("name") or ""), str(r.get("session")),
                                str(r.get("started_on"))) for r in rows]

    def abandoned_transactions(self, run_ended: Callable[[str], bool]) -> list[str]:
        """Abort the open load transactions of runs that `run_ended` says are over (a Dagster run id is read back
        from its transaction's name); what was aborted."""
        aborted = []
        for t in self.open_transactions():
            name = t.name.upper()
            if name.startswith(TRANSACTION_PREFIX) and run_ended(name[len(TRANSACTION_PREFIX):].lower()
                                                                 .replace("_", "-")):
                self._run("SELECT SYSTEM$ABORT_TRANSACTION(?)", [int(t.id)])
                aborted.append(f"aborted Snowflake transaction {t.id} ({t.name}, started {t.started_on}), left open "
                               "by a run that ended without finishing; the tables it held are free again")
        return aborted

    def quote(self, name: str) -> str:
        return identifier(name)

    def json_value(self, expression: str) -> str:
        return f"TO_VARIANT({expression})"

    def table_columns(self, schema: str, table: str) -> dict[str, str] | None:
        key = (schema.upper(), table.upper())
        if key not in self._columns:
            rows = self._run("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                             list(key)).fetchall()
            if not rows:  # a missing table is not remembered: someone may create it
                return None
            self._columns[key] = {name: data_type for name, data_type in rows}
        return dict(self._columns[key])

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
                self._columns.pop((schema.upper(), table.upper()), None)  # read again, as Snowflake reports it
                added.append(column.name)
                continue
            neutral = neutral_type(table_type)
            if neutral is None or not column_fits(column.type, neutral):
                raise SchemaConflict(
                    f"{source}: field {column.name!r} is {SNOWFLAKE_TYPES[column.type]} in this file, but column "
                    f"{schema}.{table}.{column.name.upper()} is {table_type}; refusing to coerce it. Check the "
                    "export, or migrate the column's type deliberately before reloading.")
        return added

    @contextmanager
    def staged(self, replacements: Sequence[Replacement], files: DecodedFiles) -> Iterator[list[_Load]]:
        """Everything that must happen before BEGIN: the COPY statements, and for the staged path the PUTs."""
        with tempfile.TemporaryDirectory(prefix="pendo-datasync-") as scratch:
            yield [self._prepare(index, r, files, Path(scratch)) for index, r in enumerate(replacements)]

    def load_slices(self, load: _Load) -> tuple[list[int], int]:
        r = load.replacement
        loaded, copied = [0] * len(r.slices), 0
        if load.statements:  # names are qualified, but fakesnow's COPY wants a current schema too
            self._run(f"USE SCHEMA {identifier(r.schema)}")
        for statement in load.statements:
            for result in self._run(statement).fetchall():
                rows = _rows_loaded(r, result)
                copied += rows
                if load.staged_rows is None:
                    loaded[_slice_of(load.slice_of_file, result)] += rows
            crash_point(FILE_INSERTED)
        if load.staged_rows is not None:
            if copied != sum(load.staged_rows):
                raise CheckFailed(f"{r.describe}: {sum(load.staged_rows)} rows were staged but COPY loaded {copied}")
            loaded = list(load.staged_rows)
        return loaded, load.files

    def _prepare(self, index: int, r: Replacement, files: DecodedFiles, scratch: Path) -> _Load:
        if r.unpivot is not None:  # derived from rows this load copies; nothing of its own to stage or copy
            return _Load(r, [], 0)
        # A replacement without files (a day that only deletes a table's rows) stays here too: it copies nothing,
        # so it needs no temporary stage.
        if self.stage and all(s.rows is None for s in r.slices):
            staged = [StagedFile(path, r.file_columns.get(path), s.fill) for s in r.slices for path in s.files]
            statements = (copy_from_stage(r.schema, r.table, r.columns, self.stage, staged,
                                          file_format=self.stage_file_format) if staged else [])
            return _Load(r, statements, len(staged), {path: i for i, s in enumerate(r.slices) for path in s.files})
        return self._stage_rows(index, r, files, scratch)

    def _stage_rows(self, index: int, r: Replacement, files: DecodedFiles, scratch: Path) -> _Load:
        """The replacement's rows as Parquet parts in a fresh folder of the load's temporary stage."""
        parts = _StagedParts(self, scratch, f"{uuid.uuid4().hex}-{index}", r.columns)
        staged_rows, file_count = [], 0
        with parts:
            for s in r.slices:
                rows = parts.write(s.rows) if s.rows is not None and s.rows.num_rows else 0
                for path in s.files:
                    with files.batches(r, s, path) as (_, batches):
                        for batch in batches:
                            rows += parts.write(batch)
                    file_count += 1
                staged_rows.append(rows)
        statements = [copy_staged(r.schema, r.table, r.columns, parts.folder)] if parts.count else []
        return _Load(r, statements, file_count, staged_rows=staged_rows)

    def _load_stage(self) -> str:
        """Created at the first PUT, so a load that only deletes needs no stage; temporary, so Snowflake drops it
        with the session."""
        if self.load_stage is None:
            self.load_stage = f"{LOAD_STAGE_SCHEMA}.{LOAD_STAGE_PREFIX}{uuid.uuid4().hex.upper()}"
            self._run(create_schema(LOAD_STAGE_SCHEMA))
            self._run(create_temporary_stage(self.load_stage))
        return self.load_stage

    def insert(self, schema: str, table: str, rows: pa.RecordBatch | pa.Table | pa.RecordBatchReader) -> int:
        """Bookkeeping rows, bound as one JSON value per statement (`insert_json`); event rows go through COPY."""
        table_rows = rows.read_all() if isinstance(rows, pa.RecordBatchReader) else rows
        if not table_rows.num_rows:
            return 0
        sql = insert_json(schema, table, table_rows.schema)
        for start in range(0, table_rows.num_rows, INSERT_ROWS_PER_STATEMENT):
            chunk = table_rows.slice(start, INSERT_ROWS_PER_STATEMENT)
            values = zip(*(chunk.column(i).to_pylist() for i in range(chunk.num_columns)))
            self._run(sql, [json.dumps([[_json_value(v) for v in row] for row in values])])
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
        if sql.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            self._columns.clear()
        self._run(sql, params)


class _StagedParts:
    """Parquet parts of one replacement's rows, rolled at STAGED_PART_ROWS across files and slices. Each finished
    part is PUT on a second thread (its own cursor) while the next is written; at most two exist at once."""

    def __init__(self, session: SnowflakeSession, scratch: Path, prefix: str, columns: Sequence[Column]):
        self.session, self.scratch, self.prefix, self.columns = session, scratch, prefix, columns
        self.schema = staged_parquet_schema(columns)
        self.count = 0
        self.folder: StagePath | None = None
        self._writer: pq.ParquetWriter | None = None
        self._local: Path | None = None
        self._rows = 0
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snowflake-put")
        self._upload: Future | None = None

    def __enter__(self) -> "_StagedParts":
        return self

    def __exit__(self, error_type: Any, *_: Any) -> None:
        try:
            if error_type is None:
                if self._writer is not None:
                    self._finish_part()
                if self._upload is not None:
                    self._upload.result()
        finally:
            if self._writer is not None:  # the rows failed mid-part: the part is dropped with the scratch folder
                self._writer.close()
            # A PUT still running is waited for, so nothing writes to the stage once the load has moved on; its
            # own error, if any, is not the one to report.
            self._uploader.shutdown(wait=True)

    def write(self, rows: pa.RecordBatch | pa.Table) -> int:
        if self._writer is None:
            self.folder = self.folder or StagePath(self.session._load_stage(), self.prefix)
            self._local = self.scratch / f"{self.prefix}-part-{self.count:06d}.parquet"
            self._writer = pq.ParquetWriter(self._local, self.schema)
            self.count += 1
        self._writer.write_table(staged_rows(rows, self.columns, self.schema))
        self._rows += rows.num_rows
        if self._rows >= STAGED_PART_ROWS:
            self._finish_part()
        return rows.num_rows

    def _finish_part(self) -> None:
        assert self._writer is not None and self._local is not None and self.folder is not None
        self._writer.close()
        self._writer, local, self._rows = None, self._local, 0
        if self._upload is not None:
            self._upload.result()
        statement = put_file(local, self.folder)
        self._upload = self._uploader.submit(self._put, statement, local)

    def _put(self, statement: str, local: Path) -> None:
        cursor = self.session.conn.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
            local.unlink()


def _bindable(value: Any) -> Any:
    """Dates and times travel as text in the formats each session pins (DATE_INPUT_FORMAT,
    TIMESTAMP_INPUT_FORMAT): the connector's own binding of them (epoch milliseconds) is not understood by every
    server (fakesnow)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return _bindable(value)
    if isinstance(value, bytes):
        raise ValueError("bytes are not bound as JSON; bookkeeping rows hold none")
    return value


def staged_rows(batch: pa.RecordBatch | pa.Table, columns: Sequence[Column], schema: pa.Schema) -> pa.Table:
    """A decoded batch in the staged layout (`staged_parquet_schema`), each value converted from its own batch's
    type, so files that encode a field differently (timestamp-millis and -micros) stage the same."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    by_lower = {name.lower(): name for name in table.column_names}
    arrays = []
    for column, staged_field in zip(columns, schema):
        name = by_lower.get(column.name.lower())
        if name is None:
            arrays.append(pa.nulls(table.num_rows, staged_field.type))
            continue
        values = table.column(name)
        if pa.types.is_date(values.type):
            values = values.cast(pa.date32()).cast(pa.int32())
        elif pa.types.is_timestamp(values.type):
            values = values.cast(pa.timestamp("us", values.type.tz)).cast(pa.int64())
        elif column.type is ColumnType.BYTES:
            values = pa.chunked_array([pa.array([None if v is None else v.hex() for v in chunk.to_pylist()],
                                                pa.large_string()) for chunk in values.chunks],
                                      pa.large_string())
        arrays.append(values.cast(staged_field.type))
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
