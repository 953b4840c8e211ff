"""What a replacement replaces, in SQL that DuckDB and Snowflake both run, inside the load's transaction.

Every backend calls `clear` before loading a replacement's slices, `derive` for a replacement whose rows come
from another table of the load, and `settle` once every replacement is loaded. Only the data path (how the
slices' rows get in) differs per warehouse.
"""

from __future__ import annotations

from pendo_assets.crash_points import DAY_DELETED, DEFINITIONS_DELETED, EXPORT_CLEARED, crash_point
from pendo_assets.pendo.avro import PERIOD_COLUMN
from pendo_assets.warehouse.base import Replacement, Upsert, WarehouseSession

# Wide columns unpivoted per statement: one UNION ALL each, so a catalog of hundreds of fields stays a few statements.
UNPIVOT_COLUMNS_PER_STATEMENT = 50


def clear(session: WarehouseSession, r: Replacement) -> None:
    """Delete what the replacement rebuilds: its day, its whole table, or (upsert) its own export's rows."""
    if session.table_columns(r.schema, r.table) is not None:  # a replacement that only deletes may have no table
        if r.upsert is not None:
            session.delete(r.schema, r.table, _tag(r.upsert))
        else:
            session.delete(r.schema, r.table, {PERIOD_COLUMN: r.day} if r.day is not None else {})
    crash_point(EXPORT_CLEARED if r.upsert is not None else DAY_DELETED if r.day is not None else DEFINITIONS_DELETED)


def derive(session: WarehouseSession, r: Replacement) -> int:
    """Insert the unpivoted rows of the replacement's export; returns how many."""
    u, tag = r.unpivot, r.upsert
    assert u is not None and tag is not None, "an unpivot is one export's rows"
    q = session.quote
    table, source, fields = (f"{q(r.schema)}.{q(name)}" for name in (r.table, u.source_table, u.fields_table))
    targets = [r.upsert.key, *u.attributes, u.value_column, tag.counter_column, tag.folder_column]
    attributes = ", ".join(f"f.{q(a)}" for a in u.attributes)
    same_export = (f"f.{q(tag.counter_column)} = w.{q(tag.counter_column)} "
                   f"AND f.{q(tag.folder_column)} = w.{q(tag.folder_column)}")
    for start in range(0, len(u.wide_columns), UNPIVOT_COLUMNS_PER_STATEMENT):
        columns = u.wide_columns[start:start + UNPIVOT_COLUMNS_PER_STATEMENT]
        parts, params = [], []
        for column in columns:
            parts.append(
                f"SELECT w.{q(u.source_key)}, {attributes}, {session.json_value(f'w.{q(column)}')}, "
                f"w.{q(tag.counter_column)}, w.{q(tag.folder_column)} "
                f"FROM {source} w JOIN {fields} f ON f.{q(u.name_column)} = ? AND {same_export} "
                f"WHERE w.{q(tag.counter_column)} = ? AND w.{q(tag.folder_column)} = ? AND w.{q(column)} IS NOT NULL")
            params += [column, tag.counter, tag.folder]
        session.execute(f"INSERT INTO {table} ({', '.join(q(t) for t in targets)}) " + " UNION ALL ".join(parts),
                        params)
    return session.count(r.schema, r.table, _tag(tag))


def settle(session: WarehouseSession, r: Replacement) -> None:
    """For an upsert: the export's rows replace earlier exports' rows of the same keys (an export rewritten under
    the same counter counts as earlier), and give way to a later export's rows already loaded."""
    u = r.upsert
    if u is None or session.table_columns(r.schema, r.table) is None:
        return
    q = session.quote
    table, key, counter, folder = f"{q(r.schema)}.{q(r.table)}", q(u.key), q(u.counter_column), q(u.folder_column)
    session.execute(
        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {counter} = ? AND {folder} = ?) "
        f"AND ({counter} < ? OR ({counter} = ? AND {folder} <> ?))",
        [u.counter, u.folder, u.counter, u.counter, u.folder])
    session.execute(
        f"DELETE FROM {table} WHERE {counter} = ? AND {folder} = ? "
        f"AND {key} IN (SELECT {key} FROM {table} WHERE {counter} > ?)", [u.counter, u.folder, u.counter])


def _tag(u: Upsert) -> dict[str, object]:
    return {u.counter_column: u.counter, u.folder_column: u.folder}
