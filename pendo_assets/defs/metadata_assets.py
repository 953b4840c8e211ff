"""Per subscription: the visitor and account tables, their checks, and one sensor per manifest.

Each kind (visitors, accounts) is one multi-asset, since an export updates its wide table, its long metadata
table and its field catalog in one transaction. A run applies every export the warehouse's ledger lacks, in
counter order, so it is the same whether the sensor, a UI materialization or `sync` started it.
"""


import hashlib
import json
import re
from dataclasses import dataclass

import dagster as dg

from pendo_assets.defs.assets import warehouse_pool
from pendo_assets.defs.resources import ExportStoreResource, WarehouseResource
from pendo_assets.loading.loader import TableLoad
from pendo_assets.loading.metadata_loader import (MetadataLoad, load_metadata, read_metadata_manifest,
                                                  undescribed_columns)
from pendo_assets.pendo.avro import PERIOD_COLUMN
from pendo_assets.pendo.metadata import RECORD_ID_COLUMN, MetadataKind, MetadataLocation
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.warehouse.base import WarehouseSession
from pendo_assets.warehouse.bookkeeping import LEDGER, LOAD_LOG, SCHEMA, ledger_owner
from pendo_assets.warehouse.sql import qualified

ROWS_CHECK = "rows_match_files"
UNIQUE_CHECK = "ids_unique"
DESCRIBED_CHECK = "columns_described"
COVERAGE_CHECK = "event_ids_with_record"
ANONYMOUS_VISITOR_PREFIX = "_PENDO_T_"
# Above this share of the last loaded day's (known) event ids without a record, a visitor or account export
# is probably missing: a new id is exported the day after it is first seen, so a few are normal.
MISSING_RECORDS_WARN_SHARE = 0.05
# ALLEVENTS' column holding each kind's id.
EVENT_ID_COLUMNS = {MetadataKind.VISITOR: "visitorId", MetadataKind.ACCOUNT: "accountId"}
_DESCRIPTIONS = {
    "records": "One row per {kind} id with every metadata field as a column (named by its avroFieldName), from "
               "the latest export that carried the id; `exportCounter`/`exportFolder` say which.",
    "metadata": "One row per {kind} id and field holding a value, with the field's group, name, type and flags; "
                "`value` is JSON (DuckDB) or VARIANT (Snowflake).",
    "fields": "The field catalog (metadataschema.avro): one row per avroFieldName, deleted fields kept with "
              "isDeleted.",
}


def subscription_prefix(subscription_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"sub_{subscription_id}")


@dataclass(frozen=True)
class MetadataAssets:
    location: MetadataLocation
    source: dg.AssetSpec
    tables: dg.AssetsDefinition

    @property
    def prefix(self) -> str:
        return f"{subscription_prefix(self.location.subscription_id)}_{self.location.kind.plural}"

    @property
    def keys(self) -> list[dg.AssetKey]:
        return list(self.tables.keys)


def table_keys(location: MetadataLocation) -> dict[str, dg.AssetKey]:
    """`visitors`, `visitor_metadata`, `visitor_metadata_schema` (likewise for accounts) by warehouse table."""
    prefix, kind = subscription_prefix(location.subscription_id), location.kind
    return {kind.records_table: dg.AssetKey([prefix, kind.plural]),
            kind.metadata_table: dg.AssetKey([prefix, f"{kind.value}_metadata"]),
            kind.fields_table: dg.AssetKey([prefix, f"{kind.value}_metadata_schema"])}


def build_metadata_assets(location: MetadataLocation, apps: list[AppLocation],
                          warehouse_kind: str = "duckdb") -> MetadataAssets:
    """`apps`: the subscription's apps, whose last loaded day the coverage check compares with."""
    kind = location.kind
    group = f"{subscription_prefix(location.subscription_id)}_visitors_accounts"
    source = dg.AssetSpec(
        key=dg.AssetKey([subscription_prefix(location.subscription_id), f"pendo_{kind.value}_export"]),
        group_name=group, kinds={"pendo"},
        description=f"Pendo Data Sync {kind.value} exports: `{location.manifest_path}` and its export folders.",
        metadata={"pendo/subscription_id": location.subscription_id})
    keys = table_keys(location)
    roles = {kind.records_table: "records", kind.metadata_table: "metadata", kind.fields_table: "fields"}
    records_key = keys[kind.records_table]
    checks = [
        dg.AssetCheckSpec(ROWS_CHECK, asset=records_key, blocking=True,
                          description="Rows applied from each export equal its files' rows and the bill of "
                                      "materials' count, where it gives one."),
        dg.AssetCheckSpec(UNIQUE_CHECK, asset=records_key, blocking=True,
                          description=f"Each {kind.value} id has one row."),
        dg.AssetCheckSpec(DESCRIBED_CHECK, asset=records_key, blocking=True,
                          description="Every wide column is described by the field catalog."),
        dg.AssetCheckSpec(COVERAGE_CHECK, asset=records_key, blocking=False,
                          description=f"Share of the last loaded day's ALLEVENTS {EVENT_ID_COLUMNS[kind]}s (anonymous "
                                      f"visitors excluded) with no {kind.records_table} row: a missing export shows "
                                      "here."),
    ]

    @dg.multi_asset(
        name=f"{subscription_prefix(location.subscription_id)}_{kind.plural}",
        specs=[dg.AssetSpec(key, deps=[source.key], group_name=group, kinds={warehouse_kind},
                            description=_DESCRIPTIONS[roles[table]].format(kind=kind.value),
                            metadata={"dagster/table_name": f"{location.schema_name}.{table}"})
               for table, key in keys.items()],
        check_specs=checks, pool=warehouse_pool(location, warehouse_kind),
        description=f"{kind.plural.capitalize()} of subscription {location.subscription_id}: each export not yet "
                    "applied, in counter order, one transaction each.",
    )
    def tables(context: dg.AssetExecutionContext, exports: ExportStoreResource, warehouse: WarehouseResource):
        target = warehouse.open()
        load = load_metadata(exports.open(), target, location, context.run.run_id, context.log.info)
        for table, key in keys.items():
            yield dg.MaterializeResult(asset_key=key, metadata=_table_metadata(load.tables[table], load))
        with target.session() as session:
            yield from _check_results(session, location, apps, load, records_key)

    return MetadataAssets(location, source, tables)


def _table_metadata(result: TableLoad, load: MetadataLoad) -> dict[str, object]:
    return {
        "pendo/load": f"applied exports {', '.join(map(str, load.applied))}" if load.applied else
                      "unchanged: every export is already applied",
        "dagster/row_count": result.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, data_type.lower()) for name, data_type in result.columns.items()]),
        "files": result.files,
        "added_columns": ", ".join(result.added_columns) or "none",
    }


def _check_results(session: WarehouseSession, location: MetadataLocation, apps: list[AppLocation],
                   load: MetadataLoad, key: dg.AssetKey):
    """Each check asks the warehouse, the record of what is loaded, not the load's own account of itself."""
    kind, q = location.kind, session.quote
    records = f"{q(location.schema_name)}.{q(kind.records_table)}"
    owner = ledger_owner(location)
    log = session.query(
        f"SELECT export_counter, table_name, expected_rows, loaded_rows FROM {qualified(SCHEMA, LOAD_LOG)} "
        "WHERE subscription_id = ? AND application_id = ? AND table_name = ? ORDER BY export_counter",
        [owner.subscription_id, owner.application_id, kind.records_table])
    off = [(c, e, n) for c, _, e, n in log if e is not None and e != n]
    yield dg.AssetCheckResult(
        check_name=ROWS_CHECK, asset_key=key, passed=not off,
        description=(f"{len(log)} export(s) applied, each with as many rows as its files"
                     + (f"; bill of materials disagrees for exports {off[:5]} (counter, expected, loaded)" if off
                        else "")),
        metadata={"exports_applied": len(log), "rows_applied": sum(n for *_, n in log)})
    columns = session.table_columns(location.schema_name, kind.records_table) or {}
    repeated = session.query(
        f"SELECT {q(RECORD_ID_COLUMN)}, count(*) FROM {records} GROUP BY 1 HAVING count(*) > 1 LIMIT 5"
    ) if columns else []
    yield dg.AssetCheckResult(check_name=UNIQUE_CHECK, asset_key=key, passed=not repeated,
                              metadata={"repeated_ids": dg.MetadataValue.json([list(r) for r in repeated])})
    # A column a refused export added before its transaction stays, empty: only columns holding values count.
    undescribed = [c for c in (undescribed_columns(session, location, columns) if columns else [])
                   if session.query(f"SELECT count({q(c)}) FROM {records}")[0][0]]
    yield dg.AssetCheckResult(check_name=DESCRIBED_CHECK, asset_key=key, passed=not undescribed,
                              metadata={"undescribed_columns": ", ".join(undescribed) or "none"})
    yield _coverage(session, location, apps, key)


def _coverage(session: WarehouseSession, location: MetadataLocation, apps: list[AppLocation],
              key: dg.AssetKey) -> dg.AssetCheckResult:
    kind, q = location.kind, session.quote
    event_column = EVENT_ID_COLUMNS[kind]
    seen = missing = 0
    days = {}
    records_exist = session.table_columns(location.schema_name, kind.records_table) is not None
    join = (f"LEFT JOIN {q(location.schema_name)}.{q(kind.records_table)} r ON r.{q(RECORD_ID_COLUMN)} = "
            f"e.{q(event_column)}" if records_exist else "")
    no_record = f"r.{q(RECORD_ID_COLUMN)} IS NULL" if records_exist else "TRUE"
    for app in apps:
        last = session.query(
            f"SELECT max(period_day) FROM {qualified(SCHEMA, LEDGER)} WHERE subscription_id = ? "
            "AND application_id = ? AND table_name = ?",
            [app.subscription_id, app.application_id, EventTable.ALLEVENTS.value])[0][0]
        events_columns = session.table_columns(app.schema_name, EventTable.ALLEVENTS.value) or {}
        if last is None or event_column.lower() not in {c.lower() for c in events_columns}:
            continue
        days[app.label] = str(last)
        total, without = session.query(
            f"SELECT count(DISTINCT e.{q(event_column)}), "
            f"count(DISTINCT CASE WHEN {no_record} THEN e.{q(event_column)} END) "
            f"FROM {q(app.schema_name)}.{q(EventTable.ALLEVENTS.value)} e {join} "
            f"WHERE e.{q(PERIOD_COLUMN)} = ? AND e.{q(event_column)} IS NOT NULL "
            f"AND LEFT(e.{q(event_column)}, {len(ANONYMOUS_VISITOR_PREFIX)}) <> ?",
            [last, ANONYMOUS_VISITOR_PREFIX])[0]
        seen, missing = seen + total, missing + without
    share = missing / seen if seen else 0.0
    return dg.AssetCheckResult(
        check_name=COVERAGE_CHECK, asset_key=key, passed=share <= MISSING_RECORDS_WARN_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{missing} of {seen} {event_column}s in the last loaded day's events have no "
                     f"{kind.records_table} row ({share:.1%})" if seen else "no loaded event day to compare with"),
        metadata={"ids_in_events": seen, "ids_without_record": missing, "share": round(share, 4),
                  "last_loaded_days": dg.MetadataValue.json(days)})


def build_metadata_sensor(assets: MetadataAssets, interval_seconds: int) -> dg.SensorDefinition:
    """Requests a run when the manifest lists exports not handled yet; the run applies whatever the warehouse
    lacks. The cursor (manifest fingerprint, counter -> folder handled) lives in Dagster."""
    location = assets.location

    @dg.sensor(name=f"{assets.prefix}_manifest", minimum_interval_seconds=interval_seconds,
               description=f"Watches {location.manifest_path} and applies its new exports.",
               default_status=dg.DefaultSensorStatus.RUNNING, target=assets.tables)
    def metadata_sensor(context: dg.SensorEvaluationContext, exports: ExportStoreResource):
        store = exports.open()
        cursor = json.loads(context.cursor) if context.cursor else {}
        fingerprint = store.fingerprint(location.manifest_path)
        if cursor.get("fingerprint") == fingerprint:
            return dg.SkipReason(f"{location.manifest_path} unchanged")
        listed = {str(e.counter): e.folder_name for e in read_metadata_manifest(store, location)}
        handled = cursor.get("exports", {})
        new = sorted((int(c) for c, folder in listed.items() if handled.get(c) != folder))
        new_cursor = json.dumps({"fingerprint": fingerprint, "exports": listed})
        if not new:
            return dg.SensorResult(skip_reason="no new export", cursor=new_cursor)
        digest = hashlib.sha256(json.dumps({c: listed[str(c)] for c in new}).encode()).hexdigest()[:12]
        context.log.info(f"{location.label}: exports {new} -> 1 run")
        request = dg.RunRequest(run_key=f"{location.kind.value}:{new[0]}-{new[-1]}:{digest}",
                                asset_selection=assets.keys)
        return dg.SensorResult(run_requests=[request], cursor=new_cursor)

    return metadata_sensor
