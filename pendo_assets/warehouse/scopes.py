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
    the same counter counts as earlier), and give way to a later export's rows already loaded. Derived rows are
    replaced by the keys of their source rows: a key whose values all became null derives no row, yet its old
    ones must go. They then take their attributes from the fields table as it is now."""
    u = r.upsert
    if u is None or session.table_columns(r.schema, r.table) is None:
        return
    q = session.quote
    table, key, counter, folder = f"{q(r.schema)}.{q(r.table)}", q(u.key), q(u.counter_column), q(u.folder_column)
    keys, keys_table = (key, table) if r.unpivot is None else (
        q(r.unpivot.source_key), f"{q(r.schema)}.{q(r.unpivot.source_table)}")
    session.execute(
        f"DELETE FROM {table} WHERE {key} IN (SELECT {keys} FROM {keys_table} WHERE {counter} = ? AND {folder} = ?) "
        f"AND ({counter} < ? OR ({counter} = ? AND {folder} <> ?))",
        [u.counter, u.folder, u.counter, u.counter, u.folder])
    session.execute(
        f"DELETE FROM {table} WHERE {counter} = ? AND {folder} = ? "
        f"AND {key} IN (SELECT {keys} FROM {keys_table} WHERE {counter} > ?)", [u.counter, u.folder, u.counter])
    if r.unpivot is not None:
        _refresh_attributes(session, r)


def _refresh_attributes(session: WarehouseSession, r: Replacement) -> None:
    """Every derived row carries its field's attributes as the fields table holds them now, not as they were when
    its export came: a field deleted later is deleted in the rows of ids no later export carried too. A field is
    matched on the replacement's unique key without its upsert key (`group`, `name`). Should two fields share
    those, the source is one row per pair (the latest export's, then the first by name), so the UPDATE never
    picks silently; the loader refuses such an export (`metadata_loader`)."""
    u, tag, q = r.unpivot, r.upsert, session.quote
    assert u is not None and tag is not None
    match = [c for c in r.unique_key if c != tag.key]
    refreshed = [a for a in u.attributes if a not in match]
    if not match or not refreshed:
        return
    table = q(r.table)
    fields = (f"(SELECT * FROM {q(r.schema)}.{q(u.fields_table)} QUALIFY ROW_NUMBER() OVER (PARTITION BY "
              f"{', '.join(q(c) for c in match)} ORDER BY {q(tag.counter_column)} DESC, {q(u.name_column)}) = 1)")
    session.execute(
        f"UPDATE {q(r.schema)}.{table} SET {', '.join(f'{q(a)} = f.{q(a)}' for a in refreshed)} FROM {fields} f "
        f"WHERE {' AND '.join(f'{table}.{q(c)} = f.{q(c)}' for c in match)} "
        f"AND ({' OR '.join(f'{table}.{q(a)} IS DISTINCT FROM f.{q(a)}' for a in refreshed)})")


def _tag(u: Upsert) -> dict[str, object]:
    return {u.counter_column: u.counter, u.folder_column: u.folder}
