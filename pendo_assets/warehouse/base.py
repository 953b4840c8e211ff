"""The small interface the loader needs from a warehouse; DuckDB implements it, Snowflake will."""

from __future__ import annotations

from typing import Any, ContextManager, Mapping, Protocol, Sequence

import pyarrow as pa

from pendo_assets.pendo.avro import Column


class SchemaConflict(Exception):
    """A file's column type cannot be stored in the existing column without changing its meaning."""


class WarehouseSession(Protocol):
    """One open transaction. Leaving the `Warehouse.session()` block commits; an exception rolls back."""

    def table_columns(self, schema: str, table: str) -> dict[str, str] | None:
        """Column name -> SQL type, or None when the table does not exist."""
        ...

    def ensure_table(self, schema: str, table: str, columns: Sequence[Column], source: str) -> list[str]:
        """Create the table, or add the columns it lacks; returns the added column names.

        Raises SchemaConflict (naming `source` and the field) when a column's type would change.
        """
        ...

    def insert(self, schema: str, table: str, rows: pa.RecordBatch | pa.Table | pa.RecordBatchReader) -> int:
        """Insert rows by column name; a reader is streamed, never held whole. Returns the rows inserted."""
        ...

    def delete(self, schema: str, table: str, where: Mapping[str, Any]) -> int:
        """Delete rows where every column equals its value (a tuple value means IN)."""
        ...

    def count(self, schema: str, table: str, where: Mapping[str, Any]) -> int: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...


class Warehouse(Protocol):
    url: str

    def session(self) -> ContextManager[WarehouseSession]: ...
