"""A day that matches 2,000 Pages, Features and Track Events loads with statements that grow with its files, not
its matchables: each statement is a round trip, and each one inside the day's transaction holds the table's lock
longer. Both Snowflake paths, on the fakesnow server, with every statement the driver sends recorded."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest

from pendo_assets.loading.loader import load_day
from pendo_assets.pendo.tables import EventTable
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse.snowflake import STAGED_PART_ROWS
from pendo_assets.warehouse.snowflake_sql import MAX_FILES_PER_COPY
from pendo_assets_tests.parquet_mirror import create_mirror_stage, mirror_as_parquet
from pendo_assets_tests.snowflake_recording import RecordingWarehouse, copies
from pendo_assets_tests.wide_day import WideDay, write_wide_day

MATCHABLES = 2000
COPY_TARGET = re.compile(r'COPY INTO "[^"]+"\."(?P<table>[^"]+)"')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[WideDay, Path, Path]:
    root = tmp_path_factory.mktemp("wide_day")
    day = write_wide_day(root / "exports", MATCHABLES)
    mirror_as_parquet(root / "exports", root / "mirror")
    return day, root / "exports", root / "mirror"


def copies_per_table(statements: list[str]) -> Counter:
    return Counter(COPY_TARGET.match(s)["table"] for s in copies(statements))


def load(warehouse: RecordingWarehouse, day: WideDay, exports: Path) -> dict:
    results = load_day(LocalExportStore(exports), warehouse, day.app, day.day, list(EventTable), "run-wide-day")
    assert {t: r.rows for t, r in results.items()} == day.rows_per_table
    return results


def test_the_server_side_path_copies_each_table_in_one_statement_per_thousand_files(
        wide, snowflake_server, snowflake_database, monkeypatch):
    day, exports, mirror = wide
    snowflake_server.use_in(monkeypatch)
    warehouse = RecordingWarehouse(snowflake_server.target(snowflake_database), stage_file_format="PARQUET",
                                   stage=create_mirror_stage(snowflake_server, snowflake_database, mirror))
    load(warehouse, day, exports)
    assert copies_per_table(warehouse.statements) == {
        table.value: math.ceil(files / MAX_FILES_PER_COPY) for table, files in day.files_per_table.items()}
    assert not [s for s in warehouse.statements if s.lstrip().upper().startswith("PUT")]


def test_the_staged_path_puts_each_part_once_and_copies_each_table_once(
        wide, snowflake_server, snowflake_database, monkeypatch):
    day, exports, _ = wide
    snowflake_server.use_in(monkeypatch)
    warehouse = RecordingWarehouse(snowflake_server.target(snowflake_database))
    load(warehouse, day, exports)
    parts = sum(math.ceil(rows / STAGED_PART_ROWS) for rows in day.rows_per_table.values())
    puts = Counter(s.called_sql for s in warehouse.recorded if s.called_sql.lstrip().upper().startswith("PUT"))
    assert len(puts) == parts <= parts + len(day.rows_per_table)  # one part per table here
    # The connector sends a PUT to a GCS-backed stage twice, the second time for the file's upload URL (fakesnow's
    # stages answer as GCS does); nothing else repeats it.
    assert set(puts.values()) <= {1, 2}
    assert copies_per_table(warehouse.statements) == {table.value: 1 for table in day.rows_per_table}
