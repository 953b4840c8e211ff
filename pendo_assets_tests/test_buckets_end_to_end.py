"""Exports read straight from a bucket: GCS, S3 and Azure, each a real local server started by the test setup.

The generator's bucket is uploaded as it looked on each sync day; the real manifest sensors tick and every
run they request executes, or `pendo-datasync sync` runs, and the warehouse is compared with the
generator's truth. Credentials reach the product only through each SDK's standard environment variables.
"""

from __future__ import annotations

import io
import json
import tempfile
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets import cli
from pendo_assets.generator import GeneratedExports, generate
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.settings import Settings
from pendo_assets_tests.e2e import (END_DAY, STEPS, assert_warehouse_matches_truth, days_of, failure_messages,
                                    loaded_state, rows_of_day, same_rows,
                                    settings_in, snapshot, tick_and_run)
from pendo_assets_tests.servers import AZURITE_ACCOUNT, BucketServer

# Each case loads through Dagster from a server: 10-30 s apiece. test_bucket_store.py is the quick check.
pytestmark = pytest.mark.slow

STORES = ["gcs_server", "s3_server", "azure_server"]
DESTINATION = {"gs": "gcs", "s3": "s3", "az": "azure"}


@pytest.fixture(params=STORES)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> BucketServer:
    server = request.getfixturevalue(request.param)
    server.use_in(monkeypatch)
    return server


def publish(server: BucketServer, bucket: str, as_of) -> GeneratedExports:
    """Generate the `small` scenario as of `as_of`, naming `bucket` in every rootUrl, and upload it there."""
    with tempfile.TemporaryDirectory() as local:
        generated = generate(scenario="small", out_dir=local, end_day=END_DAY, as_of=as_of, bucket=bucket,
                             destination=DESTINATION[server.scheme], azure_account=AZURITE_ACCOUNT)
        server.upload_tree(Path(local), server.url(bucket))
    return generated


def bucket_settings(server: BucketServer, bucket: str, tmp_path: Path) -> Settings:
    return replace(settings_in(tmp_path), exports=server.url(bucket))


def test_sensor_ticks_and_their_runs_load_a_bucket_exactly(server: BucketServer, tmp_path: Path) -> None:
    bucket = server.new_bucket("sensor")
    settings = bucket_settings(server, bucket, tmp_path)
    cursors: dict[str, str | None] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        for as_of in STEPS:
            generated = publish(server, bucket, as_of)
            results = tick_and_run(settings, instance, cursors)
            assert results and all(result.success for _, result in results), failure_messages(results)
            assert_warehouse_matches_truth(settings, generated)
        assert tick_and_run(settings, instance, cursors) == []


def test_sync_loads_a_bucket_exactly(server: BucketServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = server.new_bucket("sync")
    settings = bucket_settings(server, bucket, tmp_path)
    generated = publish(server, bucket, STEPS[1])
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PENDO_FIRST_DAY", settings.first_day.isoformat())
    with redirect_stdout(io.StringIO()) as output:
        status = cli.main(["sync", "--exports", settings.exports, "--warehouse", settings.warehouse])
    assert status == 0, output.getvalue()
    assert_warehouse_matches_truth(settings, generated)




def reexports_of_loaded_days(manifest_path: Path, loaded: tuple[set[int], set[str]]) -> list[tuple[dict, dict]]:
    """Each new export's allEvents period of a day already loaded, one per day."""
    counters, days = loaded
    found: dict[str, tuple[dict, dict]] = {}
    for entry in json.loads(manifest_path.read_text())["exports"]:
        for period in entry.get("timeDependent", []) if entry["counter"] not in counters else []:
            if "allEvents" in period and period["allEvents"]["files"] and period["periodId"] in days:
                found.setdefault(period["periodId"], (entry, period))
    return list(found.values())


def damage(local: Path, app: AppLocation, loaded: tuple[set[int], set[str]], bucket: str,
           kinds: list[str]) -> list[tuple[str, list[str]]]:
    """Damage, in the local tree about to be uploaded, one re-exported loaded day per kind.

    Returns each damaged day and what its failure must say.
    """
    manifest_path = local / app.manifest_path
    manifest = json.loads(manifest_path.read_text())
    damaged = []
    for kind, (entry, period) in zip(kinds, reexports_of_loaded_days(manifest_path, loaded), strict=False):
        name = period["allEvents"]["files"][0]
        victim = manifest_path.parent / entry["rootUrl"].rsplit("/", 1)[1] / name
        listed = next(e for e in manifest["exports"] if e["counter"] == entry["counter"])
        block = next(b for b in listed["timeDependent"] if b["periodId"] == period["periodId"] and "allEvents" in b)
        expected = {"missing": ["listed file(s) missing", name], "truncated": [name, "truncated or corrupt"],
                    "dot-dot name": [f"'../{name}' must not contain"],
                    "rootUrl in another bucket": ["names bucket 'another-bucket'"]}[kind]
        if kind == "missing":
            victim.unlink()
        elif kind == "truncated":
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
        elif kind == "dot-dot name":
            block["allEvents"]["files"] = [f"../{name}"]
        else:
            listed["rootUrl"] = listed["rootUrl"].replace(f"/{bucket}/", "/another-bucket/")
        day = period["periodId"][:10]
        # A rogue rootUrl refuses the whole manifest, so that message names the export but no day.
        damaged.append((day, [*expected, f"export {entry['counter']}",
                              *([] if kind == "rootUrl in another bucket" else [day])]))
    assert len(damaged) == len(kinds), "the scenario re-exports too few loaded days"
    manifest_path.write_text(json.dumps(manifest))
    return damaged


BAD_FILES = ["missing", "truncated", "dot-dot name"]


# A rogue rootUrl is refused from the manifest alone, before any read: test_paths covers gs:// and s3://
# rootUrls; Azure's https://<account>.blob.core.windows.net/<container>/ form is checked against a server here.
@pytest.mark.parametrize("store, kinds", [*((store, BAD_FILES) for store in STORES),
                                          ("azure_server", ["rootUrl in another bucket"])],
                         ids=[*(f"{store}-bad files" for store in STORES), "azure_server-rootUrl in another bucket"])
def test_bad_input_in_a_bucket_fails_naming_it_and_loses_nothing(request: pytest.FixtureRequest, store: str,
                                                                kinds: list[str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    server = request.getfixturevalue(store)
    server.use_in(monkeypatch)
    bucket = server.new_bucket("bad-input")
    settings = bucket_settings(server, bucket, tmp_path)
    cursors: dict[str, str | None] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        first = publish(server, bucket, STEPS[0])
        assert all(result.success for _, result in tick_and_run(settings, instance, cursors))
        app = AppLocation(first.apps[0].subscription_id, first.apps[0].application_id)
        first_manifest = tmp_path / "first_manifest.json"
        first_manifest.write_bytes(server.filesystem().cat_file(f"{bucket}/{app.manifest_path}"))
        with tempfile.TemporaryDirectory() as local:
            generate(scenario="small", out_dir=local, end_day=END_DAY, as_of=STEPS[1], bucket=bucket,
                     destination=DESTINATION[server.scheme], azure_account=AZURITE_ACCOUNT)
            damaged = damage(Path(local), app, loaded_state(first_manifest), bucket, kinds)
            server.upload_tree(Path(local), server.url(bucket))
        before = snapshot(settings, app)

        results = tick_and_run(settings, instance, cursors)

    message = " ".join(failure_messages(results))
    for day, expected in damaged:
        for text in (*expected, app.application_id):
            assert text in message, (text, message)
        assert same_rows(rows_of_day(snapshot(settings, app), day), rows_of_day(before, day))
    if kinds == ["rootUrl in another bucket"]:  # the manifest is refused whole: nothing of the app loads
        assert not any(result.success for _, result in results) and snapshot(settings, app) == before
    else:
        bad_days = {day for day, _ in damaged}
        assert any(result.success for request, result in results if not bad_days & set(days_of(request)))
