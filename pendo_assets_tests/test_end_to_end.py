"""The real sensor tick and the real runs it requests, on generated exports, then the warehouse read back.

The oracle is the generator's own world model (what Pendo's exports mean), never the loader's plan.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets.sync import run_check_evaluations, step_failures
from pendo_assets.definitions import build_app_assets_for, build_definitions
from pendo_assets.defs.pending import pending_from_history
from pendo_assets.defs.assets import app_key_prefix
from pendo_assets.pendo.models import parse_manifest
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.pendo_queries import STALE_MATCHED_FEATURE_EVENTS, VALID_MATCHED_FEATURE_EVENTS
from pendo_assets.warehouse.sql import quote_ident
from pendo_assets_tests.e2e import (END_DAY, STEPS, assert_warehouse_matches_truth, days_of, generate_small,
                                    settings_in, tick_and_run)


# The tests marked slow take 7-13 s each; test_scenarios_end_to_end[small] keeps a sync of `small` fast.
@pytest.mark.slow
def test_sensor_ticks_and_their_runs_load_exactly_what_the_exports_mean(settings):
    cursors: dict[str, str | None] = {}
    with dg.instance_for_test() as instance:
        for as_of in STEPS:
            generated = generate_small(settings.exports, as_of=as_of)
            results = tick_and_run(settings, instance, cursors)
            assert results, f"the sensor requested nothing as of {as_of}"
            failed = [(r.run_key, r.asset_selection) for r, result in results if not result.success]
            assert not failed
            checks = [e for _, result in results for e in result.get_asset_check_evaluations()]
            assert checks and all(e.passed for e in checks)
            assert {e.partition for e in checks} == {d for r, _ in results for d in days_of(r)}
            assert_warehouse_matches_truth(settings, generated)
        assert tick_and_run(settings, instance, cursors) == [], "an unchanged manifest requested runs"
    assert_seed_003_queries_run_unchanged(settings, generated)


def assert_seed_003_queries_run_unchanged(settings: Settings, generated) -> None:
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    with DuckDBWarehouse(settings.warehouse).session() as session:
        session.execute(f"USE {quote_ident(app.schema_name)}")
        columns = list(session.table_columns(app.schema_name, "MATCHEDFEATUREEVENTS"))
        stale, valid = (session.query(sql) for sql in (STALE_MATCHED_FEATURE_EVENTS, VALID_MATCHED_FEATURE_EVENTS))
        everything = session.query("SELECT * FROM MatchedFeatureEvents")
    key = [columns.index("matchableId"), columns.index("eventId"), columns.index("periodId")]
    stale_keys, valid_keys = ({tuple(r[i] for i in key) for r in rows} for rows in (stale, valid))
    assert stale_keys and valid_keys, "the scenario has both stale and valid matched feature events"
    assert not stale_keys & valid_keys
    assert stale_keys | valid_keys <= {tuple(r[i] for i in key) for r in everything}


@pytest.mark.slow
def test_a_second_step_loads_only_the_days_new_exports_affect(settings):
    with dg.instance_for_test() as instance:
        generate_small(settings.exports, as_of=STEPS[0])
        first = tick_and_run(settings, instance, {})
        manifest_path = next(Path(settings.exports).glob("datasync/*/*/exportmanifest.json"))
        before = {e["counter"] for e in json.loads(manifest_path.read_text())["exports"]}
        generate_small(settings.exports, as_of=STEPS[1])
        second = tick_and_run(settings, instance, {})
        new_entries = [e for e in json.loads(manifest_path.read_text())["exports"] if e["counter"] not in before]
        new_days = {p["periodId"][:10] for e in new_entries for p in e.get("timeDependent", [])}
        assert first
        assert {d for r, _ in second for d in days_of(r)} == new_days


def test_sensor_skips_days_before_the_first_partition(tmp_path):
    settings = settings_in(tmp_path, first_day=END_DAY - timedelta(days=3))
    generate_small(settings.exports)
    with dg.instance_for_test() as instance:
        results = tick_and_run(settings, instance, {})
    days = {date.fromisoformat(d) for r, _ in results for d in days_of(r)}
    assert days and min(days) >= END_DAY - timedelta(days=3)


def test_asset_keys_and_groups_show_each_app(settings):
    generated = generate_small(settings.exports)
    defs = build_definitions(settings)
    app = generated.apps[0]
    prefix = app_key_prefix(AppLocation(app.subscription_id, app.application_id))
    assert prefix == f"sub_{app.subscription_id}_app_{app.application_id.replace('-', 'm')}"
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {f"{prefix}/{name}" for name in ("pendo_export", "allevents", "matchedpageevents", "matchedfeatureevents",
                                            "matchedtracktypeevents", "pages", "features", "tracktypes",
                                            "guides")} <= keys
    assert graph.get(dg.AssetKey([prefix, "allevents"])).group_name == prefix


def test_a_backfill_range_run_records_a_materialization_and_a_check_per_day(settings):
    generate_small(settings.exports)
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    days = [(END_DAY - timedelta(days=n)).isoformat() for n in range(6, 0, -1)]
    prefix = defs.sensors[0].name.removesuffix("_manifest")
    allevents = dg.AssetKey([prefix, "allevents"])
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=[allevents], raise_on_error=False,
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
        assert result.success
        assert sorted(e.materialization.partition for e in result.get_asset_materialization_events()) == days
        assert sorted(e.partition for e in result.get_asset_check_evaluations()) == days
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(allevents, "eventcount_matches_bom"), limit=50)
        assert sorted(h.partition for h in history) == days
        assert {h.status.value for h in history} == {"SUCCEEDED"}


@pytest.mark.slow
def test_a_failing_count_check_fails_the_run_and_names_the_numbers(settings):
    import fastavro

    generate_small(settings.exports)
    manifest_path = next(Path(settings.exports).glob("datasync/*/*/exportmanifest.json"))
    latest = json.loads(manifest_path.read_text())["exports"][-1]
    period = next(p for p in latest["timeDependent"] if "allEvents" in p)
    page = next(m for m in period["matchedEvents"] if m["type"] == "Page" and m["eventCount"])
    path = manifest_path.parent / latest["rootUrl"].rsplit("/", 1)[1] / page["files"][0]
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        schema, records = reader.writer_schema, list(reader)
    with path.open("wb") as fo:  # same row count, but rows claim another matchable: only the check can see it
        fastavro.writer(fo, schema, [{**r, "matchableId": "someOtherPage"} for r in records])
    page_id = page["id"].split("/", 1)[1]
    with dg.instance_for_test() as instance:
        results = [(r, res) for r, res in tick_and_run(settings, instance, {}) if period["periodId"][:10] in days_of(r)]
        ((_, result),) = results
        failed = [e for e in run_check_evaluations(instance, result.run_id) if not e.passed]
    assert not result.success
    assert f"{page_id} ({page['eventCount']}, 0)" in " ".join(step_failures(result))
    assert [e.asset_key.path[-1] for e in failed] == ["matchedpageevents"]
    off = failed[0].metadata["matchables_off (expected, actual)"].value
    assert off[page_id] == [page["eventCount"], 0] and off["someOtherPage"] == [0, len(records)]


def test_days_without_a_partition_are_named_with_their_exports_and_not_requested(tmp_path):
    settings = settings_in(tmp_path, first_day=END_DAY - timedelta(days=3))
    generated = generate_small(settings.exports)
    manifest_path = Path(generated.apps[0].manifest_path)
    manifest = json.loads(manifest_path.read_text())
    latest = manifest["exports"][-1]
    latest["timeDependent"].append({"periodId": "2099-01-01T00:00:00Z", "allEvents": {"files": [], "eventCount": 0}})
    manifest_path.write_text(json.dumps(manifest))
    partitions, (app_assets,) = build_app_assets_for(settings)

    with dg.instance_for_test() as instance:
        entries = parse_manifest(manifest_path.read_bytes(), "m").exports
        work = pending_from_history(app_assets, entries, partitions, instance)

    warning = work.outside_partitions_warning()
    assert f"before the first partition ({END_DAY - timedelta(days=3)})" in warning, warning
    assert f"after the last complete UTC day, 2099-01-01 .. 2099-01-01 in exports {latest['counter']}," in warning
    assert generated.apps[0].application_id in warning
    assert work.days and all(partitions.has_partition_key(day.isoformat()) for day in work.days)
