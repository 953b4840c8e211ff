"""Live: the server-side Snowflake path on a real account, reading a real export bucket. Skipped unless configured.

Everywhere else fakesnow stands in for Snowflake, but it has no Avro COPY and reaches no bucket. Here Snowflake
itself reads Pendo's Avro files through the external stage, which proves what fakesnow cannot: the COPY's
conversions (DATEADD for periodId, TO_TIMESTAMP_NTZ for timestamps) fit how the stage gives Avro fields, and a
day's rows match its bill of materials.

Run it against a scratch database: it replaces the day's rows there, and writes the ledger and catalog beside them.

    export PENDO_LIVE_SNOWFLAKE_URL='snowflake://LOADER@myorg-myaccount/PENDO_SCRATCH?warehouse=LOAD_WH&role=LOADER'
    export SNOWFLAKE_PRIVATE_KEY_PATH=~/.ssh/pendo_loader.p8   # or SNOWFLAKE_PRIVATE_KEY, or SNOWFLAKE_PASSWORD
    export PENDO_LIVE_SNOWFLAKE_STAGE=PENDO_SCRATCH.RAW.PENDO_EXPORTS   # an external stage over the export root
    export PENDO_LIVE_EXPORTS=gs://acme-pendo-exports   # that root, read as a sync reads it
    export PENDO_LIVE_APP=5123456789012345/-323232      # <subscriptionId>/<applicationId>
    export PENDO_LIVE_DAY=2025-02-20                     # a day whose allEvents the app's manifest lists
    .venv/bin/python -m pytest -m live -rs

The stage's URL and PENDO_LIVE_EXPORTS must name the same root (the folder holding `datasync/`): COPY names files
by their path under it. The bucket is read with its own credentials, as a sync reads it (for GCS
PENDO_GCS_SERVICE_ACCOUNT_KEY or Google's default credentials; for S3 the AWS chain; for Azure AZURE_STORAGE_*).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime

import pyarrow as pa
import pytest

from pendo_assets import cli
from pendo_assets.generator import generate

from pendo_assets.defs.resources import open_exports
from pendo_assets.loading.loader import (HEADER_BLOCK_BYTES, count_table_day, folders_of, load_day,
                                         read_manifest)
from pendo_assets.pendo.avro import PERIOD_COLUMN, Column, ColumnType, read_columns
from pendo_assets.pendo.paths import expected_location, export_file_path
from pendo_assets.pendo.plan import plan_day
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.stores.base import ExportStore
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA, ledger_of_day
from pendo_assets.warehouse.base import SessionTag
from pendo_assets.warehouse.snowflake import LockWaitTimedOut, SnowflakeWarehouse
from pendo_assets.warehouse.snowflake_config import (PASSWORD_VARIABLE, PRIVATE_KEY_PATH_VARIABLE,
                                                     PRIVATE_KEY_VARIABLE, SnowflakeTarget, parse_snowflake_url)
from pendo_assets.warehouse.snowflake_sql import (check_statements, copy_from_stage, create_schema, identifier,
                                                  string_literal)
from pendo_assets.warehouse.sql import quote_ident
from pendo_assets_tests.snowflake_recording import (RecordingWarehouse, by_session, copies, record_statements,
                                                    server_side_problems, transaction_problems)

SETTINGS = ("PENDO_LIVE_SNOWFLAKE_URL", "PENDO_LIVE_SNOWFLAKE_STAGE", "PENDO_LIVE_EXPORTS", "PENDO_LIVE_APP",
            "PENDO_LIVE_DAY")
SECRETS = (PASSWORD_VARIABLE, PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE)
TIMESTAMP_COLUMN = "browserTimestamp"
# A stage query takes only a named file format; a temporary one goes with the session.
AVRO_FORMAT = f"{BOOKKEEPING_SCHEMA}.PENDO_LIVE_AVRO"
# A stage path in a FROM clause is not quoted, so only characters that need no quoting there.
UNQUOTED_PATH = re.compile(r"[A-Za-z0-9_.=/-]+")


def unset_settings() -> list[str]:
    unset = [name for name in SETTINGS if not os.environ.get(name)]
    if not any(os.environ.get(name) for name in SECRETS):
        unset.append(" or ".join(SECRETS))
    return unset


pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,  # a real account: seconds per statement
    pytest.mark.skipif(bool(unset_settings()),
                       reason=f"live Snowflake suite; set {', '.join(unset_settings())} (see the module docstring)"),
]


@dataclass(frozen=True)
class Live:
    target: SnowflakeTarget
    stage: str
    store: ExportStore
    app: AppLocation
    day: date


@pytest.fixture(scope="module")
def live() -> Live:
    subscription_id, _, application_id = os.environ["PENDO_LIVE_APP"].partition("/")
    if not subscription_id or not application_id:
        pytest.fail("PENDO_LIVE_APP must be <subscriptionId>/<applicationId>", pytrace=False)
    return Live(parse_snowflake_url(os.environ["PENDO_LIVE_SNOWFLAKE_URL"]), os.environ["PENDO_LIVE_SNOWFLAKE_STAGE"],
                open_exports(os.environ["PENDO_LIVE_EXPORTS"]), AppLocation(subscription_id, application_id),
                date.fromisoformat(os.environ["PENDO_LIVE_DAY"]))


def all_events_files(live: Live) -> list[str]:
    """The day's allEvents files as the manifest's plan lists them, relative to the export root."""
    manifest = read_manifest(live.store, live.app)
    folders = folders_of(live.app, manifest.exports, expected_location(live.store.location, manifest.exports))
    slices = plan_day(manifest.exports, live.day).tables[EventTable.ALLEVENTS].slices
    files = [export_file_path(folders[s.counter], name, s.describe()) for s in slices for name in s.files]
    if not files:
        pytest.fail(f"the manifest lists no allEvents file for {live.day}; set PENDO_LIVE_DAY to a day it has",
                    pytrace=False)
    return files


def test_a_day_loads_through_the_stage_with_the_bill_of_materials_counts_and_its_ledger(live):
    warehouse = RecordingWarehouse(live.target, stage=live.stage)
    results = load_day(live.store, warehouse, live.app, live.day, list(EventTable), f"live-{uuid.uuid4().hex}",
                       reload=True)

    assert copies(warehouse.statements) and server_side_problems(warehouse.statements, live.stage) == []
    assert check_statements(warehouse.statements) == []
    with warehouse.session() as session:
        ledger = ledger_of_day(session, live.app, live.day)
        for table, result in results.items():
            rows, per_matchable = count_table_day(session, live.app, table, live.day)
            assert result.expected_rows is not None, f"{table.value}: the bill of materials gives no eventCount"
            assert rows == result.rows == result.expected_rows, table
            assert per_matchable == {m: n for m, n in result.expected_by_matchable.items() if n}, table
            assert ledger[table.value] == result.built_from, table


def test_the_stage_gives_dates_and_timestamps_as_the_integers_the_copy_converts(live):
    stage = ".".join(identifier(part) for part in live.stage.split("."))
    with SnowflakeWarehouse(live.target).session() as session:
        session.execute(create_schema(BOOKKEEPING_SCHEMA))
        session.execute(f"CREATE TEMPORARY FILE FORMAT {AVRO_FORMAT} TYPE = AVRO")
        for path in all_events_files(live):
            assert UNQUOTED_PATH.fullmatch(path), f"{path} needs quoting in a stage path"
            found = session.query(
                f"SELECT TYPEOF($1:{quote_ident(PERIOD_COLUMN)}), TYPEOF($1:{quote_ident(TIMESTAMP_COLUMN)}) "
                f"FROM @{stage}/{path} (FILE_FORMAT => {string_literal(AVRO_FORMAT)}) LIMIT 1")
            if found:  # an export may hold a file without rows
                break
        else:
            pytest.fail(f"no allEvents file of {live.day} holds a row")
    with live.store.open(path, block_size=HEADER_BLOCK_BYTES) as handle:
        avro_types = {c.name: c.avro_type for c in read_columns(handle, path)}
    assert found == [("INTEGER", "INTEGER")], (
        f"{path}: the stage gives {PERIOD_COLUMN} and {TIMESTAMP_COLUMN} as {found}, Avro types "
        f"{avro_types.get(PERIOD_COLUMN)!r} and {avro_types.get(TIMESTAMP_COLUMN)!r}; copy_from_stage converts "
        "integers (DATEADD, TO_TIMESTAMP_NTZ)")


# Each conversion the COPYs make, applied to a value as Snowflake's Avro reader gives it (a VARIANT), and the type
# and value it must make: (Avro type, neutral type, the value as JSON, Snowflake's TYPEOF, the value read back).
CONVERSIONS = [
    ({"type": "int", "logicalType": "date"}, ColumnType.DATE, "19827", "DATE", date(2024, 4, 14)),
    ("int", ColumnType.DATE, "19827", "DATE", date(2024, 4, 14)),  # periodId as days
    ("long", ColumnType.DATE, "20240414", "DATE", date(2024, 4, 14)),  # periodId as yyyymmdd
    ("string", ColumnType.DATE, '"2024-04-14T00:00:00Z"', "DATE", date(2024, 4, 14)),  # periodId as text
    ({"type": "long", "logicalType": "timestamp-millis"}, ColumnType.TIMESTAMP, "1713052800123", "TIMESTAMP_NTZ",
     datetime(2024, 4, 14, 0, 0, 0, 123000)),
    ({"type": "long", "logicalType": "timestamp-micros"}, ColumnType.TIMESTAMP, "1713052800123456",
     "TIMESTAMP_NTZ", datetime(2024, 4, 14, 0, 0, 0, 123456)),
    ("string", ColumnType.TEXT, '"a"', "VARCHAR", "a"),
    ("long", ColumnType.INT64, "7", "INTEGER", 7),
    ("double", ColumnType.FLOAT64, "1.5", "DOUBLE", 1.5),
    ("boolean", ColumnType.BOOLEAN, "true", "BOOLEAN", True),
    ("string", ColumnType.BYTES, '"00ff41"', "BINARY", b"\x00\xffA"),  # the staged layout: hex text
    ("string", ColumnType.JSON, '"{\\"k\\": 1}"', "OBJECT", None),  # JSON text, parsed
    ({"type": "map", "values": "string"}, ColumnType.JSON, '{"k": "v"}', "OBJECT", None),
]


@pytest.mark.parametrize("avro_type, column_type, value, typeof, expected", CONVERSIONS,
                         ids=[f"{c[1].value}-from-{c[0] if isinstance(c[0], str) else c[0]['type']}-{n}"
                              for n, c in enumerate(CONVERSIONS)])
def test_every_conversion_makes_its_snowflake_type(live, avro_type, column_type, value, typeof, expected):
    name = "periodId" if column_type is ColumnType.DATE and avro_type in ("int", "long", "string") else "f"
    converted = converted_expression(Column(name, column_type, pa.null(), avro_type))
    with SnowflakeWarehouse(live.target).session() as session:
        ((found, read),) = session.query(f"SELECT TYPEOF(TO_VARIANT({converted})), {converted} "
                                         "FROM (SELECT PARSE_JSON(?) AS v)", [f'{{"{name}": {value}}}'])
    assert found == typeof, converted
    if expected is not None:
        assert read == expected, converted


def converted_expression(column: Column) -> str:
    """The COPY's expression for `column`, reading the field from the subquery's VARIANT object `v` (a record as the
    Avro reader gives it) instead of a file."""
    (statement,) = copy_from_stage("S", "T", [column], "STAGE", ["f.avro"])
    select = statement.split(" FROM (SELECT ", 1)[1].rsplit(" FROM @", 1)[0]
    return select.replace("$1:", "v:")


def test_a_load_blocked_by_another_session_fails_within_lock_timeout_naming_it(live):
    schema, table = f"PENDO_LIVE_LOCKS_{uuid.uuid4().hex[:8].upper()}", "T"
    column = Column("periodId", ColumnType.DATE, pa.date32())
    with SnowflakeWarehouse(live.target).session() as holder:
        holder.ensure_table(schema, table, [column], "setup")
        holder.insert(schema, table, pa.table({"periodId": pa.array([live.day], pa.date32())}))
        with pytest.raises(RuntimeError, match="released"), holder.transaction():
            holder.delete(schema, table, {"periodId": live.day})
            (holder_transaction,) = holder.query("SELECT CURRENT_TRANSACTION()")[0]
            blocked = SnowflakeWarehouse(replace(live.target, lock_timeout_seconds=5))
            started = time.monotonic()
            with pytest.raises(LockWaitTimedOut) as failure, blocked.session(SessionTag("live", "lock-test")) as s:
                with s.transaction():
                    s.delete(schema, table, {"periodId": live.day})
            waited = time.monotonic() - started
            raise RuntimeError("released")
        assert str(holder_transaction) in str(failure.value) and "SYSTEM$ABORT_TRANSACTION" in str(failure.value)
        assert 5 <= waited < 60, waited
        holder.execute(f"DROP SCHEMA {identifier(schema)}")


def test_a_first_sync_of_30_exports_keeps_the_transaction_rules(live, tmp_path, monkeypatch):
    """Thirty exports' catalog and load logs: the bookkeeping a production first sync writes, on a real account's
    bind threshold, through the staged path; nothing inside a transaction commits it, or locks what apps share."""
    generate("manifest-rotation", tmp_path / "exports")
    monkeypatch.setenv("PENDO_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("PENDO_WAREHOUSE", os.environ["PENDO_LIVE_SNOWFLAKE_URL"])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PENDO_SNOWFLAKE_STAGE", raising=False)
    with record_statements() as recorder:
        assert cli.main(["sync"]) == 0
    assert transaction_problems(by_session(recorder.statements), recorder.session_parameters) == []
