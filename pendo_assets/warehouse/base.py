"""The seam between the loader and a warehouse.

The loader describes a load: which table-days to replace from which export files, with the row counts the
bill of materials promises, and the bookkeeping to write with them. The warehouse carries it out in one
transaction, choosing its own data path (DuckDB: the decoded Arrow stream; Snowflake: COPY from a stage),
and runs the shared checks (`checks.py`) before it commits. Schema changes come first, outside that
transaction, because Snowflake commits any open transaction on DDL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, ContextManager, Iterator, Mapping, Protocol, Sequence

import pyarrow as pa

from pendo_assets.pendo.avro import Column


class SchemaConflict(Exception):
    """A file's column type cannot be stored in the existing column without changing its meaning."""


@dataclass(frozen=True)
class SliceRows:
    """One slice of the bill of materials: its files in order (or rows already decoded), and its promised count."""

    describe: str  # names the export, day and slice, for messages
    files: tuple[str, ...] = ()  # paths relative to the export root
    expected_rows: int | None = None  # the bill of materials' eventCount
    # Columns the slice gives a value when its files lack them (a matched file may omit its matchableId).
    fill: Mapping[str, str] = field(default_factory=dict)
    rows: pa.Table | None = None  # decoded rows instead of files (definitions, merged in Python)


@dataclass(frozen=True)
class Upsert:
    """The slices' rows are one export's, tagged with its counter and folder (the slices' `fill`), and replace the
    rows of the same `key` from earlier exports instead of a day or the whole table. A later export's rows win
    whatever order exports are applied in, so a rebuild or a late-arriving export never undoes a newer row."""

    key: str
    counter: int
    folder: str
    counter_column: str
    folder_column: str


@dataclass(frozen=True)
class Unpivot:
    """Rows the warehouse derives from the same export's rows in another table of the load: one row per key and
    wide column holding a value, with that column's attributes from `fields_table` (matched on `name_column`) and
    the value as JSON (DuckDB) or VARIANT (Snowflake), so lists and numbers keep their types."""

    source_table: str
    source_key: str
    fields_table: str
    name_column: str
    attributes: tuple[str, ...]
    wide_columns: tuple[str, ...]
    value_column: str


@dataclass(frozen=True)
class Replacement:
    """Replace a table's rows of one periodId day (or the whole table when `day` is None) with the slices' rows;
    with `upsert`, replace only the rows of the keys the new rows carry; with `unpivot`, the rows are derived in
    the warehouse from an earlier replacement of the same load."""

    schema: str
    table: str
    day: date | None
    slices: tuple[SliceRows, ...]
    # Columns to exist before the transaction: the union of the files' columns, as their headers give them.
    columns: tuple[Column, ...]
    # Columns no two rows of the day may share (Pendo's events are unique per day).
    unique_key: tuple[str, ...] = ()
    upsert: Upsert | None = None
    unpivot: Unpivot | None = None

    @property
    def describe(self) -> str:
        if self.upsert is not None:
            return f"{self.table} from export {self.upsert.counter}"
        return f"{self.table} day {self.day}" if self.day is not None else self.table


@dataclass
class Replaced:
    replacement: Replacement
    rows_per_slice: list[int]
    files: int

    @property
    def rows(self) -> int:
        return sum(self.rows_per_slice)


class DecodedFiles(Protocol):
    """Export files decoded to Arrow, for warehouses whose data path runs through Python."""

    def batches(self, replacement: Replacement, slice_rows: SliceRows, path: str
                ) -> ContextManager[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
        """The file's rows, completed with the slice's `fill` and checked as they stream."""
        ...


# Writes the bookkeeping (ledger, load log) in the transaction that replaced the rows, given what was loaded.
Bookkeeping = Callable[["WarehouseSession", list[Replaced]], None]


class WarehouseSession(Protocol):
    """A connection. Statements run on their own unless inside `transaction()`, which commits when its
    block ends and rolls back on any exception."""

    def transaction(self) -> ContextManager[None]: ...

    def quote(self, name: str) -> str:
        """A column, table or schema name as this warehouse stores it, quoted (see `sql.quote_ident`)."""
        ...

    def json_value(self, expression: str) -> str:
        """SQL turning `expression` into this warehouse's JSON value (DuckDB JSON, Snowflake VARIANT)."""
        ...

    def table_columns(self, schema: str, table: str) -> dict[str, str] | None:
        """Column name -> the warehouse's SQL type, or None when the table does not exist."""
        ...

    def ensure_table(self, schema: str, table: str, columns: Sequence[Column], source: str) -> list[str]:
        """Create the table, or add the (nullable) columns it lacks; returns the added column names.

        Never inside a transaction. Raises SchemaConflict (naming `source` and the field) when a column's type
        would change.
        """
        ...

    def replace(self, replacements: Sequence[Replacement], files: DecodedFiles,
                bookkeeping: Bookkeeping) -> list[Replaced]:
        """In one transaction: clear each replacement's scope and load its slices (`scopes`), settle the upserts,
        run `checks.check_replaced`, write the bookkeeping, commit. Any failure rolls everything back."""
        ...

    def insert(self, schema: str, table: str, rows: pa.RecordBatch | pa.Table | pa.RecordBatchReader) -> int:
        """Insert rows by column name (bookkeeping and other small tables). Returns the rows inserted."""
        ...

    def delete(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        """Delete rows where every column equals its value (a tuple value means IN)."""
        ...

    def count(self, schema: str, table: str, where: Mapping[str, Any]) -> int: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """`?` marks each parameter, in every warehouse."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...


class Warehouse(Protocol):
    url: str

    def session(self) -> ContextManager[WarehouseSession]: ...
