"""The fakesnow server the Snowflake tests run against: a real process, reachable with the connector, and stopped
by its PID. See snowflake_server.py and the fixtures in conftest.py."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import pytest
import snowflake.connector

from pendo_assets_tests.servers import listening_pid_is
from pendo_assets_tests.snowflake_server import FakeSnowflakeServer, start_fakesnow, unique_database_name


def test_the_server_is_the_recorded_process_listening_on_its_port(snowflake_server: FakeSnowflakeServer) -> None:
    assert snowflake_server.process.poll() is None
    assert listening_pid_is(snowflake_server.pid, snowflake_server.port)


def test_a_rolled_back_insert_is_gone(snowflake_server: FakeSnowflakeServer, snowflake_database: str) -> None:
    connection = snowflake.connector.connect(**snowflake_server.connect_args(), database=snowflake_database)
    with closing(connection), closing(connection.cursor()) as cursor:
        cursor.execute("CREATE SCHEMA pendo")
        cursor.execute("CREATE TABLE pendo.events (visitor_id VARCHAR, num_events NUMBER(38, 0))")
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO pendo.events VALUES (?, ?)", ["visitor-1", 3])
        assert cursor.execute("SELECT COUNT(*) FROM pendo.events").fetchone() == (1,)
        cursor.execute("ROLLBACK")
        assert cursor.execute("SELECT COUNT(*) FROM pendo.events").fetchone() == (0,)


def test_a_new_database_does_not_see_another_ones_tables(snowflake_server: FakeSnowflakeServer,
                                                         snowflake_database: str) -> None:
    tables_query = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema <> 'INFORMATION_SCHEMA'"
    connection = snowflake.connector.connect(**snowflake_server.connect_args(), database=snowflake_database)
    with closing(connection), closing(connection.cursor()) as cursor:
        cursor.execute("CREATE SCHEMA pendo")
        cursor.execute("CREATE TABLE pendo.accounts (account_id VARCHAR)")
        assert cursor.execute(tables_query).fetchone() == (1,)

    other_database = snowflake_server.create_database("other")
    connection = snowflake.connector.connect(**snowflake_server.connect_args(), database=other_database)
    with closing(connection), closing(connection.cursor()) as cursor:
        assert cursor.execute(tables_query).fetchone() == (0,)


@pytest.mark.parametrize("hint", ["test_x[gcs_server-1]", "9 lives", "", "___"])
def test_a_database_name_is_an_unquoted_identifier(hint: str) -> None:
    name = unique_database_name(hint)
    assert name[0].isalpha() and name.replace("_", "").isalnum() and name == name.upper()


@pytest.mark.slow  # starts a server of its own
def test_a_stopped_server_leaves_no_process(tmp_path: Path) -> None:
    server = start_fakesnow(tmp_path)
    server.stop()
    assert server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
