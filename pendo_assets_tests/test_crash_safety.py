"""SIGKILL a real `pendo-datasync sync` at named points of a load: every day stays old or new, never a mix.

A bucket is loaded as of an earlier day (the old state), then newer exports arrive: finalized
re-exports, a retroactive export and new days. The sync that loads them is killed at one point (see
`pendo_assets/crash_points.py`); the warehouse must then hold, for each day, either all of
its old rows or all of its new ones, and each definition table wholly old or new. The next sync
must finish the work: the warehouse then equals a sync that was never interrupted.

`make test` kills at a few points; `make crash-test` at every one of CRASH_POINTS_ALL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pendo_assets.crash_points import CRASH_AT_VARIABLE
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA
from pendo_assets_tests.e2e import STEPS, generate_small

# Every crash point runs real syncs in their own processes, each paying Dagster's start-up.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SYNC = str(Path(sys.executable).parent / "pendo-datasync")
CRASH_POINTS_QUICK = ["batch-inserted@3", "day-committed@1", "definitions-deleted@1"]
CRASH_POINTS_ALL = [
    "manifest-read@1", "manifest-read@3", "catalog-written@1", "catalog-written@2",
    "day-deleted@1", "day-deleted@2", "day-deleted@6",
    "batch-inserted@1", "batch-inserted@3", "batch-inserted@8", "batch-inserted@15",
    "file-inserted@1", "file-inserted@5", "table-replaced@1", "table-replaced@4",
    "load-log-written@1", "load-log-written@3", "day-committed@1", "day-committed@3",
    "definitions-deleted@1", "definitions-deleted@3", "definitions-committed@1",
]
CRASH_POINTS = CRASH_POINTS_ALL if os.environ.get("PENDO_CRASH_TEST") == "all" else CRASH_POINTS_QUICK
# The catalog's own bookkeeping columns differ between two correct syncs.
# `version`: each recording of a catalog entry gets a fresh one.
RUN_SPECIFIC_COLUMNS = {"first_seen_at", "first_seen_by_run", "loaded_at", "run_id", "version"}

Row = frozenset  # of (column, value) pairs, NULLs left out so a column added later compares equal


@dataclass(frozen=True)
class Bucket:
    exports: Path
    home: Path
    warehouse: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PENDO_EXPORTS": str(self.exports), "PENDO_WAREHOUSE": str(self.warehouse),
                "PENDO_FIRST_DAY": "2024-01-01", "DAGSTER_HOME": str(self.home), **extra}

    def sync(self, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([SYNC, "sync"], cwd=REPO, env=self.env(**extra), capture_output=True, text=True,
                              timeout=600)

    def copy_to(self, folder: Path) -> "Bucket":
        folder.mkdir(parents=True)
        shutil.copytree(self.home, folder / "home")
        shutil.copy(self.warehouse, folder / "pendo.duckdb")
        return Bucket(self.exports, folder / "home", folder / "pendo.duckdb")


@dataclass(frozen=True)
class WarehouseState:
    days: dict[date, dict[str, frozenset[Row]]]
    definitions: dict[str, frozenset[Row]]
    bookkeeping: dict[str, frozenset[Row]]


def read_state(path: Path) -> WarehouseState:
    days: dict[date, dict[str, frozenset[Row]]] = {}
    definitions, bookkeeping = {}, {}
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, table in tables:
            cursor = conn.execute(f'SELECT * FROM "{schema}"."{table}"')
            columns = [d[0] for d in cursor.description]
            rows = [Row((c, v) for c, v in zip(columns, values) if v is not None and c not in RUN_SPECIFIC_COLUMNS)
                    for values in cursor.fetchall()]
            name = f"{schema}.{table}"
            if schema == BOOKKEEPING_SCHEMA:
                bookkeeping[name] = frozenset(rows) if table != "LOAD_LOG" else frozenset()
            elif "periodId" in columns:
                for row in rows:
                    day = dict(row)["periodId"]
                    days.setdefault(day, {}).setdefault(name, set()).add(row)
            else:
                definitions[name] = frozenset(rows)
    return WarehouseState({d: {t: frozenset(r) for t, r in by_table.items()} for d, by_table in days.items()},
                          definitions, bookkeeping)


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> tuple[Bucket, WarehouseState, WarehouseState]:
    """The bucket loaded as of the first step (old), the newer exports published, and the uninterrupted result."""
    root = tmp_path_factory.mktemp("crash")
    old = Bucket(root / "exports", root / "old" / "home", root / "old" / "pendo.duckdb")
    old.home.mkdir(parents=True)
    generate_small(old.exports, as_of=STEPS[0])
    first = old.sync()
    assert first.returncode == 0, first.stdout + first.stderr
    generate_small(old.exports, as_of=STEPS[1])
    reference = old.copy_to(root / "reference")
    second = reference.sync()
    assert second.returncode == 0, second.stdout + second.stderr
    old_state, new_state = read_state(old.warehouse), read_state(reference.warehouse)
    changed = [d for d in set(old_state.days) | set(new_state.days) if old_state.days.get(d) != new_state.days.get(d)]
    assert len(changed) >= 5 and old_state.definitions != new_state.definitions, "the new exports must change things"
    return old, old_state, new_state


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_sync_killed_anywhere_leaves_each_day_old_or_new_and_the_next_sync_finishes(states, point, tmp_path):
    old, old_state, new_state = states
    bucket = old.copy_to(tmp_path / "bucket")

    killed = bucket.sync(**{CRASH_AT_VARIABLE: point})

    assert killed.returncode == -9, f"the sync never reached {point}: {killed.stdout}{killed.stderr}"
    after_crash = read_state(bucket.warehouse)
    for day in set(old_state.days) | set(new_state.days) | set(after_crash.days):
        assert after_crash.days.get(day) in (old_state.days.get(day), new_state.days.get(day)), \
            f"{day} holds a mix of old and new rows after a kill at {point}"
    for table in set(old_state.definitions) | set(new_state.definitions):
        assert after_crash.definitions.get(table) in (old_state.definitions.get(table),
                                                      new_state.definitions.get(table)), table

    resumed = bucket.sync()

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert read_state(bucket.warehouse) == new_state
    assert ", 0 run(s) to do" in bucket.sync().stdout
