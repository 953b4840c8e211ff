"""The checks every warehouse runs inside a load's transaction, before it commits. Written once, in SQL that
DuckDB and Snowflake both run: a failure raises, and the warehouse rolls the whole load back."""

from __future__ import annotations

from pendo_assets.pendo.avro import PERIOD_COLUMN
from pendo_assets.warehouse.base import Replaced, WarehouseSession


class CheckFailed(Exception):
    """Loaded rows disagree with the bill of materials or with Pendo's rules; the message names the files."""


def check_replaced(session: WarehouseSession, replaced: list[Replaced]) -> None:
    for done in replaced:
        _check_slice_counts(done)
        if done.replacement.day is not None and done.rows:  # nothing loaded: the day was only deleted
            _check_day(session, done)
        _check_unique(session, done)


def _check_slice_counts(done: Replaced) -> None:
    for slice_rows, loaded in zip(done.replacement.slices, done.rows_per_slice):
        if slice_rows.expected_rows is not None and loaded != slice_rows.expected_rows:
            raise CheckFailed(
                f"{slice_rows.describe}: the bill of materials says eventCount={slice_rows.expected_rows} but the "
                f"files hold {loaded} rows ({', '.join(slice_rows.files)})")


def _check_day(session: WarehouseSession, done: Replaced) -> None:
    """Every loaded row carries the day's periodId: otherwise it landed in another day, and the day is short."""
    r = done.replacement
    in_day = session.count(r.schema, r.table, {PERIOD_COLUMN: r.day})
    if in_day != done.rows:
        files = "; ".join(f"{s.describe}: {', '.join(s.files)}" for s in r.slices if s.files)
        raise CheckFailed(f"{r.describe}: {done.rows - in_day} of the {done.rows} loaded row(s) carry a "
                          f"{PERIOD_COLUMN} other than {r.day} ({files})")


def _check_unique(session: WarehouseSession, done: Replaced) -> None:
    """Pendo's key is (periodId, eventId), plus matchableId in matched tables: a repeat means a bad export."""
    r = done.replacement
    if not r.unique_key or not done.rows:
        return
    key_sql = ", ".join(session.quote(c) for c in r.unique_key)
    day_filter, params = (f" WHERE {session.quote(PERIOD_COLUMN)} = ?", [r.day]) if r.day is not None else ("", [])
    repeated = session.query(
        f"SELECT {key_sql}, count(*) AS n FROM {session.quote(r.schema)}.{session.quote(r.table)}{day_filter} "
        f"GROUP BY {key_sql} HAVING count(*) > 1 ORDER BY n DESC, {key_sql} LIMIT 3", params)
    if repeated:
        examples = ", ".join(f"{'/'.join(map(str, row[:-1]))} x{row[-1]}" for row in repeated)
        files = "; ".join(f"{s.describe}: {', '.join(s.files)}" for s in r.slices if s.files)
        raise CheckFailed(
            f"{r.describe}: the same {' + '.join(r.unique_key)} appears more than once (e.g. {examples}), but "
            f"Pendo's rows are unique{' per day' if r.day is not None else ''}; loaded from {files or 'decoded rows'}")
