"""The real programs in real processes: `dagster definitions validate` and `pendo-datasync sync`."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pendo_assets.sync.lock import LOCK_FILE
from pendo_assets_tests.e2e import generate_small

# Each test starts real programs, each paying Dagster's start-up.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    generate_small(tmp_path / "exports")
    (tmp_path / "dagster_home").mkdir()
    return {**os.environ, "PENDO_EXPORTS": str(tmp_path / "exports"), "PENDO_WAREHOUSE": str(tmp_path / "w.duckdb"),
            "PENDO_FIRST_DAY": "2024-01-01", "DAGSTER_HOME": str(tmp_path / "dagster_home")}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def table_contents(path: str) -> dict[str, list[tuple]]:
    with duckdb.connect(path, read_only=True) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_schema LIKE 'SUB_%' ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": sorted(conn.execute(f'SELECT * FROM "{s}"."{t}"').fetchall(), key=repr)
                for s, t in tables}


def test_definitions_load_in_a_real_dagster_process(environment):
    result = run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_sync_loads_everything_then_nothing_the_second_time(environment):
    first = run([str(BIN / "pendo-datasync"), "sync"], environment)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ALLEVENTS" in first.stdout and "0 failure(s)" in first.stdout
    contents = table_contents(environment["PENDO_WAREHOUSE"])
    assert contents and all(contents.values())

    second = run([str(BIN / "pendo-datasync"), "sync"], environment)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 run(s) to do" in second.stdout and "nothing to load" in second.stdout
    assert table_contents(environment["PENDO_WAREHOUSE"]) == contents

    runs = sorted((Path(environment["DAGSTER_HOME"]) / "history" / "runs").glob("*.db"))
    assert runs, "sync must record its runs in the Dagster instance at DAGSTER_HOME"


def test_sync_exits_non_zero_and_names_the_file_when_one_is_missing(environment):
    manifest_path = next(Path(environment["PENDO_EXPORTS"]).glob("datasync/*/*/exportmanifest.json"))
    latest = json.loads(manifest_path.read_text())["exports"][-1]
    period = next(p for p in latest["timeDependent"] if "allEvents" in p)
    victim = manifest_path.parent / latest["rootUrl"].rsplit("/", 1)[1] / period["allEvents"]["files"][0]
    victim.unlink()
    result = run([str(BIN / "pendo-datasync"), "sync"], environment)
    assert result.returncode == 1
    assert victim.name in result.stdout and "FAILED" in result.stdout


def test_help_documents_the_commands_and_settings(environment):
    result = run([str(BIN / "pendo-datasync"), "--help"], environment)
    assert result.returncode == 0
    for text in ("sync", "generate", "apps", "PENDO_EXPORTS", "PENDO_WAREHOUSE", "PENDO_FIRST_DAY", "DAGSTER_HOME"):
        assert text in result.stdout


def test_two_syncs_started_together_load_each_day_once(environment):
    """The second sync waits for the first's lock, then finds nothing left: no day is loaded twice."""
    env = {**environment, "PYTHONUNBUFFERED": "1"}
    with open(Path(environment["DAGSTER_HOME"]) / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        syncs = [subprocess.Popen([str(BIN / "pendo-datasync"), "sync"], cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
        waiting = [sync.stdout.readline() for sync in syncs]
        fcntl.flock(lock, fcntl.LOCK_UN)
    outputs = [sync.communicate(timeout=600)[0] for sync in syncs]

    assert all("waiting for it to finish" in line for line in waiting), waiting
    assert [sync.returncode for sync in syncs] == [0, 0], outputs
    assert sorted(", 0 run(s) to do" in output for output in outputs) == [False, True], outputs
    with duckdb.connect(environment["PENDO_WAREHOUSE"], read_only=True) as conn:
        loads = conn.execute('SELECT table_name, period_day, export_counter, matchable_id, count(DISTINCT run_id) '
                             'FROM "PENDO_DATASYNC"."LOAD_LOG" GROUP BY ALL HAVING count(DISTINCT run_id) > 1'
                             ).fetchall()
    assert loads == []
