"""How the tests read Snowflake statements (snowflake_statements.py) and the rules they hold a load's statements to
(snowflake_recording.py), on hand-written statements: no server, no connector."""

from __future__ import annotations

import pytest
from snowflake.connector.cursor import SnowflakeCursor, SnowflakeCursorBase

from pendo_assets_tests.snowflake_recording import (bookkeeping_locks_inside_transactions, ddl_inside_transactions,
                                                    record_statements, transaction_problems,
                                                    transactions_without_lock_timeout)
from pendo_assets_tests.snowflake_statements import (Begin, begin_of, current_transaction_column, ends_transaction,
                                                     is_bind_stage, is_ddl, locked_table, session_settings,
                                                     shows_transactions, transaction_to_abort, used_schema)

# What snowflake-connector-python 4.8.1 sends before uploading an executemany's binds.
BIND_STAGE = "create or replace TEMP stage SYSTEMBIND file_format=(type=csv field_optionally_enclosed_by='\"')"


@pytest.mark.parametrize("sql, begin", [
    ("BEGIN", Begin(None)), ("begin work", Begin(None)), ("BEGIN TRANSACTION;", Begin(None)),
    ("START TRANSACTION", Begin(None)), ("BEGIN TRANSACTION NAME load_day", Begin("load_day")),
    ("begin name x1", Begin("x1")), ("  /* why */ START TRANSACTION NAME \"Load \"\"7\"\"\"", Begin('Load "7"')),
    ("BEGIN\n  SELECT 1;\nEND", None), ("BEGINNING", None), ("COMMIT", None),
])
def test_a_begin_is_read_with_its_name(sql: str, begin: Begin | None) -> None:
    assert begin_of(sql) == begin


@pytest.mark.parametrize("sql, ends", [("COMMIT", True), ("rollback work;", True), ("COMMIT WORK", True),
                                       ("COMMITTED", False), ("SELECT 'COMMIT'", False)])
def test_commit_and_rollback_end_a_transaction(sql: str, ends: bool) -> None:
    assert ends_transaction(sql) is ends


@pytest.mark.parametrize("sql, ddl", [
    ("CREATE TABLE t (a INT)", True), ("create or replace TEMP stage SYSTEMBIND", True),
    ("-- first\nALTER TABLE t ADD COLUMN b INT", True), ("DROP TABLE t", True), ("CREATE TABLE t AS SELECT 1", True),
    ("COMMENT ON TABLE t IS 'x'", True), ("GRANT SELECT ON t TO ROLE r", True),
    ("ALTER SESSION SET LOCK_TIMEOUT = 60", False), ("TRUNCATE TABLE t", False), ("INSERT INTO t VALUES (1)", False),
    ("SELECT 'CREATE'", False), ("USE SCHEMA s", False), ("SHOW TRANSACTIONS", False),
])
def test_ddl_is_what_snowflake_commits_a_transaction_for(sql: str, ddl: bool) -> None:
    assert is_ddl(sql) is ddl


@pytest.mark.parametrize("sql, bind_stage", [
    (BIND_STAGE, True), ("CREATE OR REPLACE TEMPORARY STAGE systembind", True),
    ("create or replace SCOPED TEMPORARY stage SNOWPARK_TEMP_STAGE_BIND file_format=(type=csv)", True),
    ('CREATE TEMPORARY STAGE "PENDO_DATASYNC"."LOAD_1"', False), ("create or replace TEMP stage SYSTEMBINDS", False),
])
def test_the_connectors_bind_stage_is_told_apart(sql: str, bind_stage: bool) -> None:
    assert is_bind_stage(sql) is bind_stage


def test_alter_session_is_read_as_what_it_sets_and_unsets() -> None:
    assert session_settings("ALTER SESSION SET LOCK_TIMEOUT = 60, query_tag = 'pendo ''sync''' TIMEZONE=UTC") == (
        {"LOCK_TIMEOUT": 60, "QUERY_TAG": "pendo 'sync'", "TIMEZONE": "UTC"}, [])
    assert session_settings("alter session set autocommit = false;") == ({"AUTOCOMMIT": False}, [])
    assert session_settings("ALTER SESSION UNSET LOCK_TIMEOUT, QUERY_TAG") == ({}, ["LOCK_TIMEOUT", "QUERY_TAG"])
    assert session_settings("ALTER TABLE t SET COMMENT = 'x'") is None


@pytest.mark.parametrize("sql, table", [
    ('DELETE FROM "PENDO_DATASYNC"."LEDGER" WHERE a = ?', ("PENDO_DATASYNC", "LEDGER")),
    ("update pendo_datasync.load_log set a = 1", ("pendo_datasync", "load_log")),
    ('MERGE INTO db . "PENDO_DATASYNC".catalog t USING s ON t.a = s.a', ("db", "PENDO_DATASYNC", "catalog")),
    ("DELETE FROM ledger", ("ledger",)), ("INSERT INTO pendo_datasync.ledger VALUES (1)", None),
    ("SELECT * FROM pendo_datasync.ledger", None),
])
def test_a_locking_write_names_its_table(sql: str, table: tuple[str, ...] | None) -> None:
    assert locked_table(sql) == table


def test_the_transaction_statements_the_server_answers_are_recognised() -> None:
    assert current_transaction_column("select current_transaction()") == "CURRENT_TRANSACTION()"
    assert current_transaction_column("SELECT CURRENT_TRANSACTION() AS open_id") == "open_id"
    assert current_transaction_column("SELECT CURRENT_TRANSACTION(), 1") is None
    assert shows_transactions("show transactions") is False
    assert shows_transactions("SHOW TRANSACTIONS IN ACCOUNT;") is True
    assert shows_transactions("SHOW TABLES") is None
    assert transaction_to_abort("select system$abort_transaction(1530042321085)") == (
        1530042321085, "SYSTEM$ABORT_TRANSACTION(1530042321085)")
    assert transaction_to_abort("SELECT SYSTEM$ABORT_TRANSACTION('17')") == (17, "SYSTEM$ABORT_TRANSACTION('17')")
    assert transaction_to_abort("SELECT SYSTEM$ABORT_TRANSACTION(?)", ["18"]) == (18, "SYSTEM$ABORT_TRANSACTION(?)")
    assert transaction_to_abort("SELECT SYSTEM$ABORT_TRANSACTION(?)") is None
    assert used_schema('USE SCHEMA "DB"."PENDO_DATASYNC"') == "PENDO_DATASYNC"


def test_ddl_inside_a_transaction_is_reported_with_its_session() -> None:
    bad = {7: ["CREATE TABLE IF NOT EXISTS t (a INT)", "BEGIN", "DELETE FROM t", BIND_STAGE, "INSERT INTO t VALUES (1)",
               "COMMIT"]}
    (violation,) = ddl_inside_transactions(bad)
    assert violation.startswith("session 7, statement 4 (create or replace TEMP stage SYSTEMBIND")
    assert "transaction begun by statement 2" in violation
    good = {7: ["CREATE TABLE IF NOT EXISTS t (a INT)", "ALTER TABLE t ADD COLUMN IF NOT EXISTS b INT",
                "BEGIN TRANSACTION NAME load", "DELETE FROM t", "INSERT INTO t VALUES (1)", "COMMIT",
                "CREATE TEMPORARY STAGE s"]}
    assert ddl_inside_transactions(good) == []


def test_ddl_after_a_rollback_or_in_another_session_is_outside_the_transaction() -> None:
    assert ddl_inside_transactions({1: ["BEGIN", "DELETE FROM t", "ROLLBACK", "DROP TABLE t"],
                                    2: ["CREATE TABLE u (a INT)"]}) == []
    # A BEGIN inside a transaction is ignored, so the transaction runs on until the COMMIT.
    assert len(ddl_inside_transactions({1: ["BEGIN", "BEGIN", "INSERT INTO t VALUES (1)", "CREATE TABLE u (a INT)",
                                            "COMMIT"]})) == 1


def test_a_bookkeeping_delete_inside_a_transaction_is_reported_however_it_is_quoted() -> None:
    bad = {3: ["BEGIN", 'DELETE FROM "PENDO_DATASYNC"."LEDGER" WHERE period_day = ?',
               "update pendo_datasync.load_log set run_id = ?", 'MERGE INTO "Pendo_DataSync".catalog c USING x ON 1=1',
               "COMMIT"]}
    violations = bookkeeping_locks_inside_transactions(bad)
    assert [v.split(" (")[0] for v in violations] == [f"session 3, statement {n}" for n in (2, 3, 4)]
    assert "locks PENDO_DATASYNC.LEDGER inside the transaction begun by statement 1" in violations[0]
    # Through the session's current schema, too.
    assert len(bookkeeping_locks_inside_transactions({3: ['USE SCHEMA "PENDO_DATASYNC"', "BEGIN", "DELETE FROM ledger",
                                                          "COMMIT"]})) == 1


def test_bookkeeping_writes_that_lock_nothing_shared_pass() -> None:
    good = {3: ["DELETE FROM PENDO_DATASYNC.LEDGER WHERE period_day = ?",  # before the transaction: autocommitted
                "BEGIN", 'DELETE FROM "SUB_1_APP_2"."ALLEVENTS" WHERE "PERIODID" = ?',
                'INSERT INTO "PENDO_DATASYNC"."LEDGER" VALUES (?)', "SELECT * FROM pendo_datasync.ledger", "COMMIT",
                "UPDATE pendo_datasync.catalog SET a = 1"]}
    assert bookkeeping_locks_inside_transactions(good) == []


def test_a_transaction_without_lock_timeout_is_reported() -> None:
    statements = {5: ["SELECT 1", "BEGIN", "COMMIT", "BEGIN", "COMMIT"], 6: ["SELECT 1"]}
    (violation,) = transactions_without_lock_timeout(statements, {5: {"QUERY_TAG": "pendo"}, 6: {}})
    assert violation.startswith("session 5, statement 2 (BEGIN): opens a transaction without LOCK_TIMEOUT")
    # Unset before the BEGIN, the login's value no longer holds.
    assert transactions_without_lock_timeout({5: ["ALTER SESSION UNSET LOCK_TIMEOUT", "BEGIN"]},
                                             {5: {"LOCK_TIMEOUT": 60}}) != []


def test_lock_timeout_at_login_or_before_the_begin_passes() -> None:
    assert transactions_without_lock_timeout({5: ["BEGIN", "COMMIT"]}, {5: {"lock_timeout": 60}}) == []
    assert transactions_without_lock_timeout({5: ["ALTER SESSION SET LOCK_TIMEOUT = 60", "BEGIN", "COMMIT"]}, {}) == []


def test_transaction_problems_holds_every_rule() -> None:
    statements = {1: ["BEGIN", "DELETE FROM pendo_datasync.ledger", "CREATE TABLE t (a INT)", "COMMIT"]}
    assert len(transaction_problems(statements, {1: {}})) == 3
    assert transaction_problems({1: ["BEGIN", "INSERT INTO pendo_datasync.ledger VALUES (1)", "COMMIT"]},
                                {1: {"LOCK_TIMEOUT": 60}}) == []


def test_recording_patches_the_cursor_class_only_while_it_lasts() -> None:
    original = SnowflakeCursorBase.execute
    with record_statements() as outer:
        patched = SnowflakeCursorBase.execute
        assert patched is not original and SnowflakeCursor.execute is patched
        with record_statements():
            assert SnowflakeCursorBase.execute is patched
        assert SnowflakeCursorBase.execute is patched  # the outer recording still runs
    assert SnowflakeCursorBase.execute is original
    assert outer.statements == []
