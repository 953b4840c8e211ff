"""The seam between the loader and a warehouse.

The loader describes a load: which table-days to replace from which export files, with the row counts the
bill of materials promises, and the bookkeeping to write with them. `load.replace` carries it out, the same
recipe for every warehouse: schema changes first, outside the transaction, because Snowflake commits any open
transaction on DDL; then one transaction that clears, loads, settles, checks (`checks.py`) and writes the
bookkeeping. Each warehouse supplies only its data path (DuckDB: the decoded Arrow stream; Snowflake: COPY
from a stage), its connection, transaction, quoting and types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

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
    # Each file's own columns, as its header gives them: files of one day may encode a field differently
    # (timestamp-millis in one, -micros in the next), and each is converted from its own encoding.
    file_columns: Mapping[str, tuple[Column, ...]] = field(default_factory=dict, compare=False)

    @property
    def describe(self) -> str:
        if self.upsert is not None:
            return f"{self.table} from export {self.upsert.counter}"
        return f"{self.table} day {self.day}" if self.day is not None else self.table


def union_of_columns(*column_lists: Iterable[Column]) -> tuple[Column, ...]:
    """Every column once, by case-insensitive name, as the first list naming it gives it."""
    merged: dict[str, Column] = {}
    for columns in column_lists:
        for column in columns:
            merged.setdefault(column.name.lower(), column)
    return tuple(merged.values())


@dataclass
class Replaced:
    replacement: Replacement
    rows_per_slice: list[int]
    files: int
    added_columns: list[str] = field(default_factory=list)

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


class TransactionLost(Exception):
    """The warehouse ended a load's transaction before its end (Snowflake commits it on DDL): what ran before is
    committed, the rest ran on its own. The bookkeeping is not written, so the load stays pending."""


class WarehouseSession(Protocol):
    """A connection. Statements run on their own unless inside `transaction()`, which commits when its
    block ends and rolls back on any exception."""

    def transaction(self) -> ContextManager[None]: ...

    def require_open_transaction(self) -> None:
        """Raise TransactionLost if the transaction `transaction()` began has ended already."""
        ...

    def abandoned_transactions(self, run_ended: Callable[[str], bool]) -> list[str]:
        """Abort the load transactions left open by runs that `run_ended` says are over (given a run id); a
        message for each."""
        ...

    def staged(self, replacements: Sequence[Replacement], files: DecodedFiles) -> ContextManager[Sequence[Any]]:
        """What each replacement's data path needs done before BEGIN (Snowflake: PUT the decoded rows, or plan the
        COPYs from the user's stage), one handle per replacement for `load_slices`; undone when the block ends."""
        ...

    def load_slices(self, staged: Any) -> tuple[list[int], int]:
        """Inside the transaction: add one replacement's slices' rows; the rows per slice, and the files read."""
        ...

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


@dataclass(frozen=True)
class SessionTag:
    """Who a session works for, so the warehouse can tell its sessions and transactions apart (Snowflake: the
    QUERY_TAG and the transaction's name), and a later sync can end those a dead run left open."""

    owner: str  # the app (or visitor/account kind) label
    run_id: str


class Warehouse(Protocol):
    url: str

    def session(self, tag: SessionTag | None = None) -> ContextManager[WarehouseSession]: ...
