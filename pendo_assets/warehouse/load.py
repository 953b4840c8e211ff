"""The one recipe every warehouse loads by: schema changes before the transaction, then clear, load, settle, check
and bookkeeping in it. A backend supplies its connection, transaction, quoting, types and data path
(`WarehouseSession.staged` and `load_slices`); what a load does, and in which order, is written only here.

Snowflake commits any open transaction on DDL, so every CREATE and ALTER happens here, before BEGIN, and the
transaction is confirmed still open before the bookkeeping is written and before COMMIT.
"""

from __future__ import annotations

from typing import Sequence

from pendo_assets.crash_points import LOAD_LOG_WRITTEN, TABLE_REPLACED, crash_point
from pendo_assets.warehouse import scopes
from pendo_assets.warehouse.base import Bookkeeping, DecodedFiles, Replaced, Replacement, WarehouseSession
from pendo_assets.warehouse.checks import check_replaced


def replace(session: WarehouseSession, replacements: Sequence[Replacement], files: DecodedFiles,
            bookkeeping: Bookkeeping) -> list[Replaced]:
    """Replace each replacement's scope with its slices' rows in one transaction, with the bookkeeping; any failure
    rolls all of it back. Raises SchemaConflict (naming the file) before anything is deleted."""
    added = [ensure_columns(session, r) for r in replacements]
    with session.staged(replacements, files) as staged:
        with session.transaction():
            replaced = []
            for r, handle, added_columns in zip(replacements, staged, added):
                scopes.clear(session, r)
                rows_per_slice, file_count = (([scopes.derive(session, r)], 0) if r.unpivot is not None
                                              else session.load_slices(handle))
                replaced.append(Replaced(r, rows_per_slice, file_count, added_columns))
                crash_point(TABLE_REPLACED)
            for r in replacements:
                scopes.settle(session, r)
            check_replaced(session, replaced)
            session.require_open_transaction()
            bookkeeping(session, replaced)
            crash_point(LOAD_LOG_WRITTEN)
    return replaced


def ensure_columns(session: WarehouseSession, r: Replacement) -> list[str]:
    """Create the table or add the columns its files bring, checking each distinct file shape once (a day's files
    mostly share one), so a type conflict names a file that has it; returns the columns added."""
    added: list[str] = []
    shapes: dict[tuple, tuple[str, tuple]] = {}
    for path, columns in r.file_columns.items():
        shapes.setdefault(tuple((c.name, c.type) for c in columns), (path, columns))
    sources = [(f"{_slice_of(r, path)}: {path}", columns) for path, columns in shapes.values()]
    for source, columns in [*sources, (r.describe, r.columns)]:
        if columns:  # a replacement that only deletes brings no columns, and needs no table
            added += session.ensure_table(r.schema, r.table, columns, source)
    return added


def _slice_of(r: Replacement, path: str) -> str:
    return next((s.describe for s in r.slices if path in s.files), r.describe)
