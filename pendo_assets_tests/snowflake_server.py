"""A real fakesnow server standing in for Snowflake: its own process on a free loopback port, stopped by its PID.

fakesnow answers Snowflake's HTTP API from an in-memory DuckDB that every connection shares for the server's
lifetime, so each test works in a database of its own (`create_database`, or the `snowflake_database` fixture).
The session fixture that starts the server is in conftest.py.
"""

from __future__ import annotations

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
from pendo_assets_tests.servers import free_port, launch_until_ready, stop_process

FAKESNOW = Path(sys.executable).parent / "fakesnow"
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


@dataclass
class FakeSnowflakeServer:
    """A running fakesnow server: where it listens, how to reach it, and the process, stopped by its PID."""

    host: str
    port: int
    log_path: Path
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

    def stop(self) -> None:
        stop_process(self.process)


def unique_database_name(hint: str) -> str:
    """An unquoted Snowflake identifier (letters, digits, underscores; a letter first), unique per call."""
    slug = re.sub(r"_+", "_", re.sub(r"[^A-Z0-9]", "_", hint.upper())).strip("_")[:40].strip("_")
    if not slug[:1].isalpha():
        slug = f"DB_{slug}".rstrip("_")
    return f"{slug}_{uuid.uuid4().hex[:12].upper()}"


def start_fakesnow(log_dir: Path) -> FakeSnowflakeServer:
    if not FAKESNOW.exists():
        pytest.fail(f"fakesnow is not installed at {FAKESNOW}; run `make install`", pytrace=False)
    port = free_port()
    # Any HTTP answer means it is up: fakesnow has no route for `/` and answers 404.
    # fakesnow keeps internal stages' files under TMPDIR: in this run's own folder, not the machine's /tmp.
    command = ["env", f"TMPDIR={log_dir}", str(FAKESNOW), "-s", "-p", str(port), "--host", HOST]
    process, log_path = launch_until_ready("fakesnow", command, f"http://{HOST}:{port}/", log_dir)
    return FakeSnowflakeServer(HOST, port, log_path, process)
