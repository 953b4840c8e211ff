"""Per-app assets: the definition tables, the daily event tables, and their count checks.

One factory builds everything for an app, so each app reads as its own group in the lineage graph:
the Pendo export (an external source) feeds the definition tables and the daily event tables.
Event tables of one day are loaded in one warehouse transaction; each table's partitioned, blocking
check compares its rows with the bill of materials right after. A run may cover a range of days (a UI
backfill runs up to DAYS_PER_BACKFILL_RUN days per run, since a run's own start-up costs seconds):
each day is still its own transaction with its own materialization and check result, and a day that
fails does not stop the others; the run fails at the end if any day did. A table the warehouse's
ledger says is already built from the day's exports is left as it is (its check still runs), unless
the run is tagged `pendo/reload=true`.
"""


import re
from dataclasses import dataclass
from datetime import date

import dagster as dg

from pendo_assets.defs.resources import ExportStoreResource, WarehouseResource
from pendo_assets.loading.loader import (LoadError, TableLoad, count_table_day, load_day, load_definitions,
                                         read_manifest)
from pendo_assets.pendo.tables import AppLocation, DefinitionTable, EventTable

WAREHOUSE_POOL = "pendo_warehouse"
DAYS_PER_BACKFILL_RUN = 31
COUNT_CHECK = "eventcount_matches_bom"
LOADED_COUNTERS = "pendo/export_counters"
# counter=folder of each export a load included: a rewritten manifest may give a counter a new folder.
LOADED_EXPORTS = "pendo/export_folders"
# A run tagged pendo/reload=true rebuilds its tables even where the ledger says they are up to date.
RELOAD_TAG = "pendo/reload"

_EVENT_DESCRIPTIONS = {
    EventTable.ALLEVENTS: "Every raw event of the day, including guide events and events no rule matches.",
    EventTable.MATCHEDPAGEEVENTS: "Events matched by a Page rule; `matchableId` is the page id.",
    EventTable.MATCHEDFEATUREEVENTS: "Events matched by a Feature rule; `matchableId` is the feature id.",
    EventTable.MATCHEDTRACKTYPEEVENTS: "Track events matched by a Track Type; `matchableId` is the track type id.",
}
_DEFINITION_DESCRIPTIONS = {
    DefinitionTable.PAGES: "Page definitions (rules, soft deletes); join MATCHEDPAGEEVENTS on pageId = matchableId.",
    DefinitionTable.FEATURES: "Feature definitions; join MATCHEDFEATUREEVENTS on featureId = matchableId.",
    DefinitionTable.TRACKTYPES: "Track Type definitions; join MATCHEDTRACKTYPEEVENTS on trackTypeId = matchableId.",
    DefinitionTable.GUIDES: "Guide definitions; join ALLEVENTS on guideId.",
}


def app_key_prefix(app: AppLocation) -> str:
    """Asset keys allow only letters, digits and `_`, so a leading minus (app `-323232`) reads `m`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"sub_{app.subscription_id}_app_{app.application_id}".replace("-", "m"))


def table_key(app: AppLocation, table_name: str) -> dg.AssetKey:
    return dg.AssetKey([app_key_prefix(app), table_name.lower()])


@dataclass(frozen=True)
class AppAssets:
    app: AppLocation
    source: dg.AssetSpec
    definitions: dg.AssetsDefinition
    events: dg.AssetsDefinition

    @property
    def prefix(self) -> str:
        return app_key_prefix(self.app)

    def event_key(self, table: EventTable) -> dg.AssetKey:
        return table_key(self.app, table.value)

    def definition_key(self, table: DefinitionTable) -> dg.AssetKey:
        return table_key(self.app, table.table_name)


def warehouse_pool(app: AppLocation, warehouse_kind: str) -> str:
    """DuckDB takes one writer per file, so every run shares one pool. In Snowflake each app has tables of its
    own: one run per app at a time keeps each table's transactions in order (Snowflake would queue a second
    DELETE on a table behind the first; fakesnow fails it), while apps load side by side."""
    return WAREHOUSE_POOL if warehouse_kind == "duckdb" else f"{WAREHOUSE_POOL}_{app.schema_name.lower()}"


def build_app_assets(app: AppLocation, partitions: dg.DailyPartitionsDefinition,
                     warehouse_kind: str = "duckdb") -> AppAssets:
    prefix = app_key_prefix(app)
    source = dg.AssetSpec(
        key=dg.AssetKey([prefix, "pendo_export"]), group_name=prefix, kinds={"pendo"},
        description=f"Pendo Data Sync exports of {app.label}: `{app.manifest_path}` and its export folders.",
        metadata={"pendo/subscription_id": app.subscription_id, "pendo/application_id": app.application_id})
    event_keys = {table: table_key(app, table.value) for table in EventTable}
    definition_keys = {table: table_key(app, table.table_name) for table in DefinitionTable}
    event_by_key = {key: table for table, key in event_keys.items()}
    definition_by_key = {key: table for table, key in definition_keys.items()}

    @dg.multi_asset(
        name=f"{prefix}_definitions",
        specs=[dg.AssetSpec(key, deps=[source.key], group_name=prefix, kinds={warehouse_kind},
                            description=_DEFINITION_DESCRIPTIONS[table],
                            metadata={"dagster/table_name": f"{app.schema_name}.{table.table_name}"})
               for table, key in definition_keys.items()],
        can_subset=True, pool=warehouse_pool(app, warehouse_kind),
        description=f"Definition tables of {app.label}: the latest full snapshot plus later retroactive upserts.",
    )
    def definitions(context: dg.AssetExecutionContext, exports: ExportStoreResource, warehouse: WarehouseResource):
        tables = [definition_by_key[k] for k in context.selected_asset_keys]
        results = load_definitions(exports.open(), warehouse.open(), app, tables, context.run.run_id, context.log.info,
                                   reload=_reload_asked(context))
        for table in tables:
            yield dg.MaterializeResult(asset_key=definition_keys[table], metadata=_table_metadata(results[table]))

    @dg.multi_asset(
        name=f"{prefix}_events",
        specs=[dg.AssetSpec(key, deps=[source.key], group_name=prefix, kinds={warehouse_kind}, skippable=True,
                            description=_EVENT_DESCRIPTIONS[table],
                            metadata={"dagster/table_name": f"{app.schema_name}.{table.value}"})
               for table, key in event_keys.items()],
        check_specs=[dg.AssetCheckSpec(COUNT_CHECK, asset=key, blocking=True, partitions_def=partitions,
                                       description="Rows of the day equal the bill of materials' eventCount "
                                                   "(in total and per matchable).")
                     for key in event_keys.values()],
        partitions_def=partitions, can_subset=True, pool=warehouse_pool(app, warehouse_kind),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_BACKFILL_RUN),
        description=f"Daily event tables of {app.label}, one periodId day per partition, replaced in one transaction.",
    )
    def events(context: dg.AssetExecutionContext, exports: ExportStoreResource, warehouse: WarehouseResource):
        tables = [event_by_key[k] for k in context.selected_asset_keys]
        store, target = exports.open(), warehouse.open()
        failures: dict[str, list[str]] = {}
        manifest = None
        for partition in context.partition_keys:
            day = date.fromisoformat(partition)
            try:
                # A 3-year manifest takes a good part of a small day's load to parse: once per run is enough.
                manifest = manifest or read_manifest(store, app)
                results = load_day(store, target, app, day, tables, context.run.run_id, context.log.info, manifest,
                                   reload=_reload_asked(context))
            except LoadError as exc:
                context.log.error(str(exc))
                failures[partition] = [str(exc)]
                continue
            with target.session() as session:
                counts = {table: count_table_day(session, app, table, day) for table in tables}
            for table in tables:
                actual, per_matchable = counts[table]
                context.log_event(dg.AssetMaterialization(
                    asset_key=event_keys[table], partition=partition,
                    metadata={**_table_metadata(results[table]), "dagster/row_count": actual}))
                evaluation = count_check(event_keys[table], results[table], actual, per_matchable)
                context.log_event(evaluation)
                if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                    failures.setdefault(partition, []).append(
                        f"{app.label}, {table.value} {partition}: {COUNT_CHECK} failed: {evaluation.description}")
        if failures:
            raise LoadError(f"{len(failures)} of {len(context.partition_keys)} day(s) failed: "
                            + " | ".join(message for messages in failures.values() for message in messages))
        yield from ()

    return AppAssets(app, source, definitions, events)


def count_check(key: dg.AssetKey, result: TableLoad, actual: int, per_matchable: dict[str, int]
                ) -> dg.AssetCheckEvaluation:
    """The day's count check. Logged as an evaluation with its partition, so a range run records one per day."""
    partition = str(result.day)
    expected = result.expected_rows
    if expected is None:
        return dg.AssetCheckEvaluation(
            asset_key=key, check_name=COUNT_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
            partition=partition, blocking=True,
            metadata={"actual": actual, "reason": "the bill of materials gives no eventCount for this day"})
    wrong = {m: (n, per_matchable.get(m, 0)) for m, n in result.expected_by_matchable.items()
             if n is not None and per_matchable.get(m, 0) != n}
    wrong.update({m: (0, n) for m, n in per_matchable.items() if m not in result.expected_by_matchable})
    metadata = {"expected": expected, "actual": actual, "day": str(result.day),
                "export_counters": ",".join(map(str, result.touched_by))}
    description = f"expected {expected} rows (bill of materials), found {actual}"
    if wrong:
        metadata["matchables_off (expected, actual)"] = dg.MetadataValue.json(
            {m: list(v) for m, v in sorted(wrong.items())[:50]})
        description += "; per matchable (expected, actual): " + ", ".join(
            f"{m} {v}" for m, v in sorted(wrong.items())[:5])
    return dg.AssetCheckEvaluation(asset_key=key, check_name=COUNT_CHECK, passed=actual == expected and not wrong,
                                   metadata=metadata, partition=partition, blocking=True, description=description,
                                   severity=dg.AssetCheckSeverity.ERROR)


def _reload_asked(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(RELOAD_TAG, "").lower() == "true"


def _table_metadata(result: TableLoad) -> dict[str, object]:
    return {
        "pendo/load": ("unchanged: the warehouse already held it from these exports" if result.unchanged
                       else "replaced"),
        "dagster/row_count": result.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, data_type.lower()) for name, data_type in result.columns.items()]),
        LOADED_COUNTERS: ",".join(map(str, result.touched_by)),
        LOADED_EXPORTS: ",".join(f"{c}={result.export_folders[c]}" for c in result.touched_by),
        "files": result.files,
        "added_columns": ", ".join(result.added_columns) or "none",
    }
