"""A real fakesnow server standing in for Snowflake: its own process on a free loopback port, stopped by its PID.

fakesnow answers Snowflake's HTTP API from an in-memory DuckDB that every connection shares for the server's
lifetime, so each test works in a database of its own (`create_database`, or the `snowflake_database` fixture).
It runs wrapped by snowflake_test_server.py, which answers what fakesnow hides as a real account would (the bind
stage, transactions, session parameters) and logs every login and statement; `sessions()` and
`statements_since(mark())` read that log. The session fixture that starts the server is in conftest.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pendo_assets.warehouse.snowflake_config import (
    PASSWORD_VARIABLE, SECRET_VARIABLES, SnowflakeTarget, parse_snowflake_url)
from pendo_assets_tests.servers import REPO_ROOT, free_port, launch_until_ready, stop_process
from pendo_assets_tests.snowflake_statements import LOG_RECORDS, LoggedLogin, LoggedLogout, LoggedStatement

HOST = "127.0.0.1"
ACCOUNT = "fakesnow"
USER = "pendo_loader"
# fakesnow accepts any password; this one is only distinctive, so tests can check that it never leaks.
PASSWORD = "fakesnow-password-7f3a9c"
# The connector retries a failed request (fakesnow answers HTTP 500 to what it cannot run) until these run out;
# small values make such a test fail in seconds rather than minutes (tekumara/fakesnow#403).
# A test's COPY of a small day takes well under a second; this bounds a retried HTTP 500 instead.
STATEMENT_TIMEOUT_SECONDS = 20
CLIENT_TIMEOUT_SECONDS = 2
STATEMENT_LOG = "snowflake-statements.jsonl"
# The CLIENT_STAGE_ARRAY_BINDING_THRESHOLD the session's server answers. A real account answers about 65,280 binds
# (rows x columns), which a production load's bookkeeping reaches (an app with 6,000 matchables writes a load log
# row of 11 columns per matchable a day), while a test scenario writes tens of rows: at 100 the same executemany
# reaches for the bind stage in the tests as it would in production.
SMALL_ARRAY_BINDING_THRESHOLD = 100


@dataclass
class FakeSnowflakeServer:
    """A running fakesnow server: where it listens, how to reach it, and the process, stopped by its PID."""

    host: str
    port: int
    log_path: Path
    statement_log: Path
    array_binding_threshold: int
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, database: str, network_timeout: int = STATEMENT_TIMEOUT_SECONDS) -> str:
        """The product's warehouse URL (snowflake://...) for `database` on this server. Its timeouts are short:
        the connector retries an HTTP 500 (fakesnow's answer to what it cannot run) until they run out. A
        benchmark's COPY of millions of rows outlasts the default `network_timeout`, which would cancel it."""
        return (f"snowflake://{USER}@{ACCOUNT}/{database}?host={self.host}&port={self.port}&protocol=http"
                f"&login_timeout={CLIENT_TIMEOUT_SECONDS}&network_timeout={network_timeout}")

    def target(self, database: str) -> SnowflakeTarget:
        """The product's target for `database` on this server. Call `use_in` first: the product finds its secret
        in the environment."""
        return parse_snowflake_url(self.url(database))

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for `snowflake.connector.connect` to reach this server (add `database=` to use one)."""
        return {"host": self.host, "port": self.port, "protocol": "http", "account": ACCOUNT, "user": USER,
                "password": PASSWORD,
                # As fakesnow's own client settings have it: no telemetry meant for Snowflake's servers.
                "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
                "network_timeout": CLIENT_TIMEOUT_SECONDS, "login_timeout": CLIENT_TIMEOUT_SECONDS,
                "paramstyle": "qmark"}

    def use_in(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Give the product this server's password for one test, and hide any key the developer's shell sets,
        which the product would prefer."""
        for name in SECRET_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)

    def create_database(self, hint: str) -> str:
        """Create a database named after `hint` plus a random suffix, as an admin would, and return its name."""
        # Imported here, not above: conftest.py loads this module for every test, and the connector takes ~1 s.
        import snowflake.connector

        database = unique_database_name(hint)
        with closing(snowflake.connector.connect(**self.connect_args())) as connection:
            connection.cursor().execute(f"CREATE DATABASE {database}")
        return database

    def mark(self) -> int:
        """Where the statement log ends now: pass it to `statements_since` to read what came after."""
        return self.statement_log.stat().st_size

    def statements_since(self, mark: int = 0) -> list[LoggedStatement]:
        """Every statement the server received after `mark`, in the order it received them, connector-internal
        ones included."""
        return [record for record in self.records_since(mark) if isinstance(record, LoggedStatement)]

    def sessions(self, mark: int = 0) -> dict[int, LoggedLogin]:
        """The sessions opened after `mark`, by session id (the connector's `connection.session_id`)."""
        return {record.session: record for record in self.records_since(mark) if isinstance(record, LoggedLogin)}

    def records_since(self, mark: int = 0) -> list[LoggedLogin | LoggedStatement | LoggedLogout]:
        """Every login, statement and logout after `mark`, in order."""
        with self.statement_log.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode("utf-8").splitlines()
        return [LOG_RECORDS[record["event"]](**record) for record in map(json.loads, lines)]

    def stop(self) -> None:
        stop_process(self.process)


def unique_database_name(hint: str) -> str:
    """An unquoted Snowflake identifier (letters, digits, underscores; a letter first), unique per call."""
    slug = re.sub(r"_+", "_", re.sub(r"[^A-Z0-9]", "_", hint.upper())).strip("_")[:40].strip("_")
    if not slug[:1].isalpha():
        slug = f"DB_{slug}".rstrip("_")
    return f"{slug}_{uuid.uuid4().hex[:12].upper()}"


def start_fakesnow(log_dir: Path, array_binding_threshold: int = 0) -> FakeSnowflakeServer:
    """Start the wrapped fakesnow server. `array_binding_threshold` is the CLIENT_STAGE_ARRAY_BINDING_THRESHOLD its
    login answers: 0 keeps every executemany's binds inline, as fakesnow alone does; a real account answers about
    65,280; a small value makes test-sized batches reach for the bind stage, as production-sized ones do."""
    port = free_port()
    statement_log = log_dir / STATEMENT_LOG
    statement_log.touch()
    # Any HTTP answer means it is up: nothing answers `/`, so it says 404.
    # fakesnow keeps internal stages' files under TMPDIR: in this run's own folder, not the machine's /tmp.
    command = ["env", f"TMPDIR={log_dir}", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m",
               "pendo_assets_tests.snowflake_test_server", "--host", HOST, "--port", str(port),
               "--statement-log", str(statement_log), "--array-binding-threshold", str(array_binding_threshold)]
    process, log_path = launch_until_ready("fakesnow", command, f"http://{HOST}:{port}/", log_dir)
    return FakeSnowflakeServer(HOST, port, log_path, statement_log, array_binding_threshold, process)
