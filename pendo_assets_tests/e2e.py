"""Helpers shared by the end-to-end tests: generated buckets, the real sensor tick and its runs, the warehouse
read back and compared with the generator's truth."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import fastavro

from pendo_assets.definitions import build_definitions
from pendo_assets.generator import GeneratedExports, Truth, generate
from pendo_assets.generator.metadata_exports import MetadataTruth
from pendo_assets.pendo.metadata import MetadataKind, MetadataLocation
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.settings import Settings
from pendo_assets.sync import step_failures
from pendo_assets.warehouse import open_warehouse
from pendo_assets.warehouse.base import Warehouse

END_DAY = date(2025, 3, 1)
STEPS = (END_DAY - timedelta(days=5), END_DAY)


def settings_in(folder: Path, first_day: date = date(2024, 1, 1)) -> Settings:
    """Exports under `folder`/exports, the warehouse in `folder`/pendo.duckdb."""
    return Settings.from_env({}, exports=str(folder / "exports"), warehouse=str(folder / "pendo.duckdb"),
                             first_day=first_day)


def generate_small(out_dir: Path | str, as_of: date | None = None) -> GeneratedExports:
    """The `small` scenario ending on END_DAY, as published up to `as_of` (default: all of it)."""
    return generate(scenario="small", out_dir=out_dir, end_day=END_DAY, as_of=as_of)


def tick_and_run(settings: Settings, instance: dg.DagsterInstance, cursors: dict[str, str | None]):
    """One evaluation of every manifest sensor, then every run it requested, in order."""
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    results = []
    for sensor in defs.sensors:
        context = dg.build_sensor_context(instance=instance, cursor=cursors.get(sensor.name),
                                          definitions=defs, resources={"exports": defs.resources["exports"]})
        tick = sensor.evaluate_tick(context)
        cursors[sensor.name] = tick.cursor
        for request in tick.run_requests:
            result = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                            asset_selection=request.asset_selection, tags=request.tags,
                                            raise_on_error=False)
            results.append((request, result))
    return results


def days_of(request: dg.RunRequest) -> list[str]:
    """The partitions a requested run covers: one day, or a range of consecutive days."""
    if request.partition_key:
        return [request.partition_key]
    start = date.fromisoformat(request.tags.get("dagster/asset_partition_range_start", "9999-01-01"))
    end = date.fromisoformat(request.tags.get("dagster/asset_partition_range_end", "0001-01-01"))
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def failure_messages(results) -> list[str]:
    return [message for _, result in results for message in step_failures(result)]


def warehouse_of(settings: Settings) -> Warehouse:
    return open_warehouse(settings.warehouse, snowflake_stage=settings.snowflake_stage)


def read_table(warehouse: Warehouse, app: AppLocation, table: str, columns: list[str]) -> list[tuple]:
    with warehouse.session() as session:
        if session.table_columns(app.schema_name, table) is None:
            return []
        return session.query(f"SELECT {', '.join(session.quote(c) for c in columns)} "
                             f"FROM {session.quote(app.schema_name)}.{session.quote(table)}")


def assert_warehouse_matches_truth(settings: Settings, generated) -> None:
    """Every event row by day and id, with the instants it carries (a file's timestamp unit misread is 1,000x off)."""
    warehouse = warehouse_of(settings)
    for generated_app in generated.apps:
        app = AppLocation(generated_app.subscription_id, generated_app.application_id)
        truth = generated_app.truth
        loaded: dict[date, dict[str, datetime]] = {}
        for day, event_id, moment in read_table(warehouse, app, "ALLEVENTS",
                                                ["periodId", "eventId", "browserTimestamp"]):
            loaded.setdefault(day, {})[event_id] = naive_utc(moment)
        assert loaded == {d: {i: naive_utc(truth.browser_timestamps[d][i]) for i in ids}
                          for d, ids in truth.allevents.items() if ids}, app
        for table in (t for t in EventTable if t.is_matched):
            loaded_matched: dict[date, set[tuple]] = {}
            for day, matchable_id, event_id, moment, updated_at in read_table(
                    warehouse, app, table.value,
                    ["periodId", "matchableId", "eventId", "browserTimestamp", "lastUpdatedAt"]):
                loaded_matched.setdefault(day, set()).add(
                    (matchable_id, event_id, naive_utc(moment), naive_utc(updated_at)))
            expected = {d: {(m, i, naive_utc(truth.browser_timestamps[d][i]),
                             naive_utc(truth.matched_updated_at[d][m])) for m, i in rows}
                        for d, rows in truth.matched.get(table.value, {}).items() if rows}
            assert loaded_matched == expected, (app, table)
        for table, by_id in truth.definitions.items():
            id_column = {"PAGES": "pageId", "FEATURES": "featureId", "TRACKTYPES": "trackTypeId",
                         "GUIDES": "guideId"}[table]
            rows = read_table(warehouse, app, table, [id_column, "name"])
            assert {i: n for i, n in rows} == {i: d["name"] for i, d in by_id.items()}, (app, table)
            assert len(rows) == len(by_id), f"{table} has duplicate ids"
    for subscription in getattr(generated, "subscriptions", []):
        for kind, truth in ((MetadataKind.VISITOR, subscription.visitor_truth),
                            (MetadataKind.ACCOUNT, subscription.account_truth)):
            assert_metadata_matches_truth(warehouse, MetadataLocation(subscription.subscription_id, kind), truth)


def assert_metadata_matches_truth(warehouse: Warehouse, location: MetadataLocation, truth: MetadataTruth) -> None:
    """The wide table holds each id's latest exported row, the catalog each field's latest description, and the
    long table one row per id and non-null field, its value typed as JSON."""
    kind = location.kind
    records = {row.pop("id"): row for row in read_all(warehouse, location.schema_name, kind.records_table)}
    assert set(records) == set(truth.records), location.label
    for entity_id, expected in truth.records.items():
        row = records[entity_id]
        for name, value in expected.items():
            assert comparable(row[name.lower()], value) == comparable(value, value), (location.label, entity_id, name)
        for name in set(row) - {n.lower() for n in expected} - {"exportcounter", "exportfolder"}:
            assert row[name] is None, f"{entity_id}: {name} was not in its latest export, so it must read NULL"
    fields = {row["avrofieldname"]: row for row in read_all(warehouse, location.schema_name, kind.fields_table)}
    assert set(fields) == set(truth.fields), location.label
    for name, expected in truth.fields.items():
        assert {k.lower(): v for k, v in expected.items()} == {
            k: v for k, v in fields[name].items() if k not in ("exportcounter", "exportfolder")}, name
    long_rows = read_all(warehouse, location.schema_name, kind.metadata_table)
    loaded = sorted(((r[kind.id_column.lower()], r["group"], r["name"], json.loads(r["value"])) for r in long_rows),
                    key=lambda row: row[:3])
    wanted = sorted(((entity_id, truth.fields[name]["group"], truth.fields[name]["name"], value)
                     for entity_id, row in truth.records.items() for name, value in row.items() if value is not None),
                    key=lambda row: row[:3])
    assert [(i, g, n, comparable(v, w)) for (i, g, n, v), (*_, w) in zip(loaded, wanted)] == \
        [(i, g, n, comparable(w, w)) for i, g, n, w in wanted], location.label


def naive_utc(moment: datetime) -> datetime:
    """A warehouse TIMESTAMP is UTC without a zone; the generator's instants carry theirs."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo is not None else moment


def read_all(warehouse: Warehouse, schema: str, table: str) -> list[dict]:
    """Every row, keyed by lower-cased column name (Snowflake upper-cases them). Times are read as text: fakesnow
    (0.12.1) returns a NULL TIMESTAMP_NTZ to the client as 1970-01-01 00:00:00, though `IS NULL` holds for it."""
    with warehouse.session() as session:
        columns = session.table_columns(schema, table)
        if columns is None:
            return []
        selected = ", ".join(f"CAST({session.quote(c)} AS VARCHAR)" if "TIMESTAMP" in sql_type.upper()
                             else session.quote(c) for c, sql_type in columns.items())
        rows = session.query(f"SELECT {selected} FROM {session.quote(schema)}.{session.quote(table)}")
    return [dict(zip((c.lower() for c in columns), row)) for row in rows]


def comparable(loaded: object, like: object) -> object:
    """`loaded` in the shape of the truth value `like`: lists from JSON text, times as naive UTC to the millisecond,
    floats rounded (a warehouse may store doubles in text form)."""
    if isinstance(like, list) and isinstance(loaded, str):
        loaded = json.loads(loaded)
    if isinstance(like, datetime) or (isinstance(like, str) and isinstance(loaded, datetime)):
        moment = datetime.fromisoformat(str(loaded).replace("T", " ")) if isinstance(loaded, str) else loaded
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if isinstance(like, float):
        return round(float(loaded), 6)
    return loaded


def from_day(truth: Truth, first_day: date) -> Truth:
    return Truth(
        allevents={day: ids for day, ids in truth.allevents.items() if day >= first_day},
        matched={table: {day: pairs for day, pairs in days.items() if day >= first_day}
                 for table, days in truth.matched.items()},
        definitions=truth.definitions,
        event_counts={key: rows for key, rows in truth.event_counts.items() if key[1] >= first_day},
        browser_timestamps={day: by_id for day, by_id in truth.browser_timestamps.items() if day >= first_day},
        matched_updated_at={day: by_id for day, by_id in truth.matched_updated_at.items() if day >= first_day},
    )


def loaded_days_only(generated: GeneratedExports, first_day: date) -> GeneratedExports:
    return replace(generated, apps=[replace(app, truth=from_day(app.truth, first_day))
                                    for app in generated.apps])


def snapshot(settings: Settings, app: AppLocation) -> dict[str, list[dict]]:
    """Every table of the app, its rows keyed by lower-cased column name (Snowflake upper-cases them)."""
    tables = {}
    with warehouse_of(settings).session() as session:
        for (table,) in session.query(
                "SELECT table_name FROM information_schema.tables WHERE upper(table_schema) = upper(?)",
                [app.schema_name]):
            columns = [c.lower() for c in session.table_columns(app.schema_name, table)]
            rows = session.query(f"SELECT * FROM {session.quote(app.schema_name)}.{session.quote(table)}")
            tables[table] = sorted((dict(zip(columns, r)) for r in rows), key=repr)
    return tables


def rows_of_day(tables: dict[str, list[dict]], day: str) -> dict[str, list[dict]]:
    value = date.fromisoformat(day)
    return {table: [r for r in rows if r.get("periodid") == value] for table, rows in tables.items()}


def same_rows(after: dict[str, list[dict]], before: dict[str, list[dict]]) -> bool:
    """Equal on the columns that existed before: other days' loads may have added columns since."""
    def project(rows, columns):
        return sorted((tuple(r.get(c) for c in columns) for r in rows), key=repr)
    return all(project(after.get(t, []), sorted(rows[0]) if rows else [])
               == project(rows, sorted(rows[0]) if rows else [])
               for t, rows in before.items())


def loaded_state(manifest_path: Path) -> tuple[set[int], set[str]]:
    """Counters and days with allEvents in the manifest as it is now."""
    exports = json.loads(manifest_path.read_text())["exports"]
    return ({e["counter"] for e in exports},
            {p["periodId"] for e in exports for p in e.get("timeDependent", []) if "allEvents" in p})


def new_reexport_of_a_loaded_day(manifest_path: Path, before: tuple[set[int], set[str]]) -> tuple[dict, dict]:
    counters, days = before
    for entry in json.loads(manifest_path.read_text())["exports"]:
        if entry["counter"] in counters:
            continue
        for period in entry.get("timeDependent", []):
            if "allEvents" in period and period["allEvents"]["files"] and period["periodId"] in days:
                return entry, period
    raise AssertionError("the scenario has no re-export of an earlier day after the first step")


def loaded_then_reexported(settings: Settings,
                           instance: dg.DagsterInstance) -> tuple[AppLocation, Path, dict, dict]:
    """Loads the first step, publishes the next exports; returns a new re-export of an already loaded day."""
    generated = generate_small(settings.exports, as_of=STEPS[0])
    assert all(result.success for _, result in tick_and_run(settings, instance, {}))
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    manifest_path = Path(settings.exports) / app.manifest_path
    before = loaded_state(manifest_path)
    generate_small(settings.exports, as_of=STEPS[1])
    entry, period = new_reexport_of_a_loaded_day(manifest_path, before)
    return app, manifest_path, entry, period


def edit_all_events(manifest_path: Path, entry: dict, period: dict, edit) -> None:
    manifest = json.loads(manifest_path.read_text())
    for e in manifest["exports"]:
        for p in e.get("timeDependent", []):
            if e["counter"] == entry["counter"] and p["periodId"] == period["periodId"] and "allEvents" in p:
                edit(p["allEvents"])
    manifest_path.write_text(json.dumps(manifest))


def export_file(manifest_path: Path, entry: dict, name: str) -> Path:
    return manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[1] / name


def rewrite_avro(path: Path, edit) -> None:
    """Write the file again with the same schema and codec, its records passed through `edit`."""
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        schema, codec, records = reader.writer_schema, reader.codec, list(reader)
    with path.open("wb") as fo:
        fastavro.writer(fo, schema, edit(records), codec=codec)
