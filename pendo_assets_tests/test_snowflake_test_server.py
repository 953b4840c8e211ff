"""The test server answers what fakesnow alone hides, as a real account would (snowflake_test_server.py), and logs
it; driven here by the plain connector, recorded at the connector's cursor class (snowflake_recording.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import closing
from typing import Any, Iterator

import pytest
import snowflake.connector

from pendo_assets_tests.snowflake_recording import by_session, ddl_inside_transactions, record_statements
from pendo_assets_tests.snowflake_server import USER, FakeSnowflakeServer
from pendo_assets_tests.snowflake_statements import LoggedLogout

THRESHOLD = "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD"
# An executemany of 2 columns that reaches a threshold of 10 binds stays quick even inline.
SMALL_THRESHOLD = 10
# Reached without a bind stage, the fallback's inline INSERT takes well under a second; the hang it replaces took
# 600 s (the connector's upload retrying against fakesnow).
QUICK_SECONDS = 5


@pytest.fixture
def connect(snowflake_server: FakeSnowflakeServer, snowflake_database: str) -> Iterator[Any]:
    """Connections to the test's database, with session parameters of the test's choosing; closed after it."""
    connections = []

    def connection(**session_parameters: Any) -> snowflake.connector.SnowflakeConnection:
        args = snowflake_server.connect_args()
        args["session_parameters"] = {**args["session_parameters"], **session_parameters}
        connections.append(snowflake.connector.connect(**args, database=snowflake_database))
        return connections[-1]

    yield connection
    for opened in connections:
        opened.close()


def a_table(connection: Any, name: str = "t") -> Any:
    cursor = connection.cursor()
    cursor.execute("CREATE SCHEMA IF NOT EXISTS s")
    cursor.execute(f"CREATE TABLE s.{name} (a INT, b VARCHAR)")
    return cursor


def test_the_login_answers_the_threshold_and_the_session_parameters_it_was_sent(
        snowflake_server: FakeSnowflakeServer) -> None:
    sent = {"LOCK_TIMEOUT": 60, "QUERY_TAG": "pendo-datasync test", "TIMEZONE": "UTC"}
    request = urllib.request.Request(
        f"http://{snowflake_server.host}:{snowflake_server.port}/session/v1/login-request",
        data=json.dumps({"data": {"LOGIN_NAME": USER, "SESSION_PARAMETERS": sent}}).encode(),
        headers={"Content-Type": "application/json"})
    mark = snowflake_server.mark()
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        answer = json.load(response)["data"]

    parameters = {p["name"]: p["value"] for p in answer["parameters"]}
    assert parameters[THRESHOLD] == snowflake_server.array_binding_threshold > 0
    assert {name: parameters[name] for name in sent} == sent
    ((session, login),) = snowflake_server.sessions(mark).items()
    assert answer["sessionId"] == session and login.user == USER and login.parameters == sent


def test_the_connector_holds_the_session_id_the_server_logged(snowflake_server: FakeSnowflakeServer,
                                                              connect) -> None:
    mark = snowflake_server.mark()
    connection = connect(LOCK_TIMEOUT=60)
    connection.cursor().execute("SELECT 1")
    assert connection._session_parameters[THRESHOLD] == snowflake_server.array_binding_threshold
    login = snowflake_server.sessions(mark)[connection.session_id]
    assert login.parameters["LOCK_TIMEOUT"] == 60
    assert [s.sql for s in snowflake_server.statements_since(mark) if s.session == connection.session_id] == [
        "SELECT 1"]


def test_an_executemany_over_the_threshold_in_a_transaction_falls_back_to_inline_binds(
        snowflake_server: FakeSnowflakeServer, connect) -> None:
    connection = connect(**{THRESHOLD: SMALL_THRESHOLD})  # the client's own value stands, as on Snowflake
    cursor = a_table(connection)
    rows = [[n, f"row {n}"] for n in range(SMALL_THRESHOLD)]  # 2 columns: twice the threshold's binds
    mark = snowflake_server.mark()
    started = time.monotonic()
    with record_statements(connection) as recording:
        cursor.execute("BEGIN")
        cursor.executemany("INSERT INTO s.t (a, b) VALUES (?, ?)", rows)
        cursor.execute("COMMIT")
    assert time.monotonic() - started < QUICK_SECONDS
    logged = snowflake_server.statements_since(mark)
    assert cursor.execute("SELECT COUNT(*) FROM s.t").fetchone() == (len(rows),)
    assert connection._session_parameters[THRESHOLD] == 0  # what the connector does when its bind stage fails

    begin, stage, insert, commit = recording.statements
    assert stage.sql.startswith("create or replace TEMP stage SYSTEMBIND")
    assert (stage.call, stage.called_sql, stage.rows) == ("executemany", insert.sql, len(rows))
    assert [begin.sql, insert.sql, commit.sql] == ["BEGIN", "INSERT INTO s.t (a, b) VALUES (?, ?)", "COMMIT"]
    (violation,) = ddl_inside_transactions(by_session(recording.statements))
    assert violation.startswith(f"session {connection.session_id}, statement 2 (create or replace TEMP stage")

    assert [s.sql for s in logged] == [s.sql for s in recording.statements]
    assert logged[1].refused and not logged[1].succeeded and logged[1].transaction == logged[2].transaction
    assert logged[2].bound_rows == len(rows) and logged[2].succeeded
    assert ddl_inside_transactions(by_session(logged)) == [violation]


def test_ddl_inside_a_transaction_commits_it_first(snowflake_server: FakeSnowflakeServer, connect) -> None:
    connection = connect()
    cursor = a_table(connection)
    mark = snowflake_server.mark()
    assert cursor.execute("SELECT CURRENT_TRANSACTION()").fetchone() == (None,)
    cursor.execute("BEGIN TRANSACTION NAME ddl_inside")
    (transaction,) = cursor.execute("SELECT CURRENT_TRANSACTION()").fetchone()
    assert transaction.isdigit()
    cursor.execute("BEGIN")  # ignored: a transaction is open
    cursor.execute("INSERT INTO s.t VALUES (1, 'kept')")
    cursor.execute("CREATE TABLE s.u (a INT)")
    assert cursor.execute("SELECT CURRENT_TRANSACTION()").fetchone() == (None,)
    cursor.execute("INSERT INTO s.t VALUES (2, 'autocommitted')")
    cursor.execute("ROLLBACK")
    assert cursor.execute("SELECT b FROM s.t ORDER BY a").fetchall() == [("kept",), ("autocommitted",)]
    assert cursor.execute("SELECT COUNT(*) FROM s.u").fetchone() == (0,)

    create = next(s for s in snowflake_server.statements_since(mark) if s.sql.startswith("CREATE TABLE s.u"))
    assert create.transaction == create.committed == int(transaction) and create.succeeded


def test_a_killed_clients_transaction_stays_open_until_aborted(snowflake_server: FakeSnowflakeServer,
                                                               snowflake_database: str, connect) -> None:
    connection = connect()
    cursor = a_table(connection)
    cursor.execute("INSERT INTO s.t VALUES (1, 'committed')")
    mark = snowflake_server.mark()
    # A load killed inside its transaction, in a process of its own: it never sends COMMIT, ROLLBACK or logout.
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, snowflake.connector
        connection = snowflake.connector.connect(**{snowflake_server.connect_args()!r}, database={snowflake_database!r})
        cursor = connection.cursor()
        cursor.execute("BEGIN TRANSACTION NAME killed_load")
        cursor.execute("UPDATE s.t SET b = 'uncommitted' WHERE a = 1")
        print(connection.session_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """)], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    killed_session = int(killed.stdout)

    (listed,) = [row for row in cursor.execute("SHOW TRANSACTIONS").fetchall() if row[2] == killed_session]
    assert [column[0] for column in cursor.description] == ["id", "user", "session", "name", "started_on", "state",
                                                            "scope"]
    transaction, user, _, name, _, state, _ = listed
    assert (user, name, state) == (USER, "killed_load", "running")
    assert cursor.execute(f"SELECT SYSTEM$ABORT_TRANSACTION({transaction})").fetchone() == (
        f"Aborted transaction id: {transaction}",)
    assert all(row[2] != killed_session for row in cursor.execute("SHOW TRANSACTIONS").fetchall())
    # The aborted UPDATE held the row; rolled back, it neither shows nor stands in another's way.
    cursor.execute("UPDATE s.t SET b = 'after the abort' WHERE a = 1")
    assert cursor.execute("SELECT b FROM s.t").fetchall() == [("after the abort",)]

    logged = snowflake_server.statements_since(mark)
    update = next(s for s in logged if s.session == killed_session and s.sql.startswith("UPDATE"))
    abort = next(s for s in logged if "ABORT_TRANSACTION" in s.sql)
    assert update.transaction == abort.aborted == transaction
    assert not any(isinstance(r, LoggedLogout) and r.session == killed_session
                   for r in snowflake_server.records_since(mark))


def test_a_client_that_logs_out_has_its_transaction_rolled_back(snowflake_server: FakeSnowflakeServer,
                                                                connect) -> None:
    reader = connect()
    cursor = a_table(reader)
    leaving = connect()
    mark = snowflake_server.mark()
    with closing(leaving.cursor()) as leaving_cursor:
        leaving_cursor.execute("BEGIN")
        leaving_cursor.execute("INSERT INTO s.t VALUES (1, 'uncommitted')")
    leaving.close()
    assert cursor.execute("SELECT COUNT(*) FROM s.t").fetchone() == (0,)
    assert all(row[2] != leaving.session_id for row in cursor.execute("SHOW TRANSACTIONS").fetchall())
    (logout,) = [r for r in snowflake_server.records_since(mark) if isinstance(r, LoggedLogout)]
    assert logout.session == leaving.session_id and logout.rolled_back is not None


def test_alter_session_of_a_parameter_fakesnow_lacks_is_accepted_and_logged(snowflake_server: FakeSnowflakeServer,
                                                                           connect) -> None:
    connection = connect()
    mark = snowflake_server.mark()
    assert connection.cursor().execute("ALTER SESSION SET LOCK_TIMEOUT = 30 QUERY_TAG = 'load'").fetchall() == [
        ("Statement executed successfully.",)]
    (statement,) = snowflake_server.statements_since(mark)
    assert statement.settings == {"LOCK_TIMEOUT": 30, "QUERY_TAG": "load"} and statement.succeeded
