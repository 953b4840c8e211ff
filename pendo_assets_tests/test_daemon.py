"""The sensor, the run queue and UI backfills in a real `dagster dev` (webserver + daemon), as a user runs them.

The in-process tests execute runs one after another in one process; only the daemon queues runs from
several sources at once and launches each in its own process, which is where DuckDB's single-writer
lock bites, and only a restarted daemon shows whether the sensor's cursor really lives in the instance.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg
import pytest

from pendo_assets.defs.assets import COUNT_CHECK, app_key_prefix
from pendo_assets.generator import GeneratedExports, generate
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.settings import Settings
from pendo_assets_tests.dagster_dev import (
    LOCATION, TERMINAL_RUN_STATUSES, dagster_dev, gql, launch_partition_backfill, launch_partition_run, log_tail,
    runs, scratch_home)
from pendo_assets_tests.e2e import END_DAY, assert_warehouse_matches_truth, loaded_days_only, settings_in

# Each session starts a real dagster dev and waits for its runs: minutes.
pytestmark = pytest.mark.slow

SCENARIO = "one-time-3-years"
# As of the first export day only the 3-year one-time export is published; the daily exports follow.
ONE_TIME_EXPORT_DAY = END_DAY - timedelta(days=2)
BACKFILL_DAYS = 60
SINGLE_DAY_RUNS = 2
WAIT_SECONDS = 300
# "lock", "locked", "locking", but not the queue daemon's "blocked by global concurrency limits".
DUCKDB_LOCK = re.compile(r"\block", re.IGNORECASE)


@dataclass
class Deployment:
    """One scratch installation: exports, warehouse, DAGSTER_HOME and dagster dev's log, kept across restarts."""

    root: Path
    app: AppLocation
    first_day: date

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def log(self) -> Path:
        return self.root / "dagster_dev.log"

    @property
    def settings(self) -> Settings:
        return settings_in(self.root, self.first_day)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.home), "PENDO_EXPORTS": self.settings.exports,
                "PENDO_WAREHOUSE": self.settings.warehouse, "PENDO_FIRST_DAY": self.first_day.isoformat(),
                "PENDO_SENSOR_INTERVAL": "30"}

    @property
    def prefix(self) -> str:
        return app_key_prefix(self.app)

    @property
    def sensor(self) -> str:
        return f"{self.prefix}_manifest"

    @property
    def event_keys(self) -> list[list[str]]:
        return [[self.prefix, table.value.lower()] for table in EventTable]

    @property
    def manifest(self) -> dict:
        return json.loads((Path(self.settings.exports) / self.app.manifest_path).read_text())

    @contextmanager
    def dagster_dev(self) -> Iterator[str]:
        with dagster_dev(self.env, output=self.log) as url:
            yield url

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The scratch instance read directly from DAGSTER_HOME, as the daemon stored it."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DAGSTER_HOME", str(self.home))
            with dg.DagsterInstance.get() as instance:
                yield instance


@dataclass
class FirstSession:
    deployment: Deployment
    generated: GeneratedExports
    backfill_days: list[str]
    single_days: list[str]
    backfill_id: str
    all_runs: list[dict]
    ticks: list[dict]


@pytest.fixture(scope="module")
def first_session(tmp_path_factory: pytest.TempPathFactory) -> FirstSession:
    """The sensor's first tick, a 60-day UI backfill and single days launched while it runs, until all settle.

    PENDO_FIRST_DAY is the backfill's first day, so the sensor's own first tick requests the same 60 days.
    """
    root = tmp_path_factory.mktemp("daemon")
    generated = publish(root / "exports", as_of=ONE_TIME_EXPORT_DAY)
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    days = manifest_days(json.loads(Path(generated.apps[0].manifest_path).read_text())["exports"])
    backfill_days = days[-BACKFILL_DAYS:]
    deployment = Deployment(root, app, date.fromisoformat(backfill_days[0]))
    scratch_home(deployment.home)
    single_days = backfill_days[-SINGLE_DAY_RUNS:]
    with deployment.dagster_dev() as url:
        backfill_id = launch_partition_backfill(url, backfill_days, deployment.event_keys)
        wait_for(url, deployment, "the backfill's first runs", lambda: runs(url, {"dagster/backfill": backfill_id}))
        # While the backfill's runs wait for the warehouse pool, a user materializes single days too.
        for day in single_days:
            launch_partition_run(url, day, deployment.event_keys)
        # The backfill's own status turns COMPLETED only at the backfill daemon's next pass, up to 30 s
        # later; its runs covering every day is what matters here.
        wait_for(url, deployment, "the sensor's first tick, every backfill run and every run to finish",
                 lambda: (any(t["status"] != "STARTED" for t in sensor_ticks(url, deployment.sensor))
                          and days_run_by(runs(url, {"dagster/backfill": backfill_id})) == backfill_days
                          and all_runs_terminal(url)))
        session = FirstSession(deployment, generated, backfill_days, single_days, backfill_id, runs(url),
                               sensor_ticks(url, deployment.sensor))
    return session


def test_a_60_day_ui_backfill_queued_beside_sensor_and_single_day_runs_finishes_without_lock_failures(
        first_session: FirstSession) -> None:
    """The warehouse pool must keep the runs apart: the loader waits quietly for a held DuckDB lock (up to
    120 s), so besides no lock message in any log, no two runs' steps may overlap in time."""
    deployment, all_runs = first_session.deployment, first_session.all_runs
    sources = {"sensor": [r for r in all_runs if tag(r, "dagster/sensor_name") == deployment.sensor],
               "backfill": [r for r in all_runs if tag(r, "dagster/backfill") == first_session.backfill_id],
               "single day": [r for r in all_runs if not tag(r, "dagster/sensor_name")
                              and not tag(r, "dagster/backfill")]}
    assert len(sources["backfill"]) == 2, "BackfillPolicy.multi_run(31) splits 60 days into 2 runs"
    assert days_run_by(sources["single day"]) == first_session.single_days
    assert days_run_by(sources["sensor"]) == first_session.backfill_days, first_session.ticks
    assert {r["status"] for r in all_runs} == {"SUCCESS"}, describe_runs(all_runs)
    assert most_runs_outstanding_at_once(all_runs) >= 4, describe_runs(all_runs)
    assert_steps_never_overlap(all_runs)

    with deployment.instance() as instance:
        for run in all_runs:
            text = run_log_text(instance, run["runId"])
            assert not DUCKDB_LOCK.search(text), f"run {run['runId']} mentions a lock:\n{text}"
        for key in deployment.event_keys:
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(key), COUNT_CHECK), limit=10 * BACKFILL_DAYS)
            assert {h.status.value for h in history} == {"SUCCEEDED"}, key
            assert {h.partition for h in history} == set(first_session.backfill_days), key
    assert not DUCKDB_LOCK.search(deployment.log.read_text()), "dagster dev's log mentions a lock"
    assert_warehouse_matches_truth(deployment.settings, loaded_days_only(first_session.generated,
                                                                         deployment.first_day))


def test_the_sensor_cursor_survives_a_daemon_restart(first_session: FirstSession) -> None:
    """After the restart the sensor reads only the exports published meanwhile, and requests only their days."""
    deployment = first_session.deployment
    before = {e["counter"] for e in deployment.manifest["exports"]}
    with deployment.instance() as instance:
        stored = json.loads(sensor_cursor(instance, deployment.sensor))
    assert set(stored["exports"]) == {str(c) for c in before}, "the cursor must be stored in the instance"

    generated = publish(deployment.settings.exports, as_of=END_DAY)
    new_exports = [e for e in deployment.manifest["exports"] if e["counter"] not in before]
    new_counters = sorted(e["counter"] for e in new_exports)
    assert new_counters, "the scenario publishes daily exports after the one-time export"
    earlier_runs = {r["runId"] for r in first_session.all_runs}
    earlier_ticks = {t["tickId"] for t in first_session.ticks}

    with deployment.dagster_dev() as url:
        def restarted_ticks() -> list[dict]:
            return [t for t in sensor_ticks(url, deployment.sensor)
                    if t["tickId"] not in earlier_ticks and t["status"] != "STARTED"]

        wait_for(url, deployment, "the restarted sensor's first tick and its runs",
                 lambda: restarted_ticks() and all_runs_terminal(url))
        tick = restarted_ticks()[0]
        new_runs = [r for r in runs(url) if r["runId"] not in earlier_runs]

    assert tick["status"] == "SUCCESS", tick
    tick_log = " ".join(e["message"] for e in tick["logEvents"]["events"])
    assert f"exports {new_counters} ->" in tick_log, f"the sensor re-read exports it had handled: {tick_log}"
    assert {r["runId"] for r in new_runs} == set(tick["runIds"]), describe_runs(new_runs)
    assert {r["status"] for r in new_runs} == {"SUCCESS"}, describe_runs(new_runs)
    assert days_run_by(new_runs) == manifest_days(new_exports), describe_runs(new_runs)
    counters = {int(c) for r in new_runs for c in tag(r, "pendo/export_counters").split("+")}
    assert counters <= set(new_counters), describe_runs(new_runs)
    assert_warehouse_matches_truth(deployment.settings, loaded_days_only(generated, deployment.first_day))


def publish(exports: Path | str, as_of: date) -> GeneratedExports:
    """The bucket as it looked on `as_of`, with the generator's truth of what it means."""
    return generate(SCENARIO, exports, end_day=END_DAY, as_of=as_of)


def manifest_days(exports: list[dict]) -> list[str]:
    return sorted({p["periodId"][:10] for e in exports for p in e.get("timeDependent", [])})


def tag(run: dict, key: str) -> str:
    return next((t["value"] for t in run["tags"] if t["key"] == key), "")


def days_run_by(some_runs: list[dict]) -> list[str]:
    return sorted(d for r in some_runs for d in run_days(r))


def run_days(run: dict) -> list[str]:
    """The partitions a run covers: one day, a range of days, or none (definitions)."""
    if tag(run, "dagster/partition"):
        return [tag(run, "dagster/partition")]
    start, end = tag(run, "dagster/asset_partition_range_start"), tag(run, "dagster/asset_partition_range_end")
    if not start:
        return []
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def most_runs_outstanding_at_once(all_runs: list[dict]) -> int:
    """Runs between their creation (queued) and their end, counted at each creation."""
    return max(sum(1 for other in all_runs if other["creationTime"] <= run["creationTime"] < other["endTime"])
               for run in all_runs)


def assert_steps_never_overlap(all_runs: list[dict]) -> None:
    """The warehouse pool has one slot: no two runs' steps may hold the DuckDB file at the same time."""
    steps = sorted((s["startTime"], s["endTime"], r["runId"]) for r in all_runs for s in r["stepStats"])
    for (_, first_end, first), (second_start, _, second) in zip(steps, steps[1:]):
        assert second_start >= first_end, f"steps of runs {first} and {second} overlapped"


def run_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every message a run logged, with the errors of failures."""
    lines = []
    for entry in instance.all_logs(run_id):
        lines.append(entry.user_message)
        error = getattr(entry.dagster_event.event_specific_data, "error", None) if entry.dagster_event else None
        if error:
            lines.append(error.to_string())
    return "\n".join(lines)


def sensor_cursor(instance: dg.DagsterInstance, sensor: str) -> str:
    (state,) = [s for s in instance.all_instigator_state() if s.name == sensor]
    return state.instigator_data.cursor


def sensor_ticks(url: str, sensor: str) -> list[dict]:
    """The sensor's ticks, oldest first, with what each logged."""
    answer = gql(url, """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
        ... on Sensor { sensorState { ticks(limit: 50) { tickId status runIds skipReason cursor error { message }
        logEvents { events { message } } } } } } }""",
                 {"s": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": sensor}})
    return list(reversed(answer["sensorOrError"]["sensorState"]["ticks"]))


def all_runs_terminal(url: str) -> bool:
    return all(r["status"] in TERMINAL_RUN_STATUSES for r in runs(url))


def wait_for(url: str, deployment: Deployment, what: str, done: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT_SECONDS} s for {what}\nruns:\n{describe_runs(runs(url))}"
                        f"{log_tail(deployment.log)}")
        time.sleep(1)


def describe_runs(some_runs: list[dict]) -> str:
    return "\n".join(f"{r['runId'][:8]} {r['status']:9} days {run_days(r)[:1]}..{run_days(r)[-1:]} "
                     f"sensor={tag(r, 'dagster/sensor_name') or '-'} backfill={tag(r, 'dagster/backfill') or '-'}"
                     for r in some_runs)
