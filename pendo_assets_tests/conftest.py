"""Fixtures shared by the test modules; plain helpers live in e2e.py, builders.py, dagster_dev.py, servers.py,
snowflake_server.py and snowflake_recording.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

# gcsfs reads this once, when imported: left on, every call to an emulator first waits 60 s for a gRPC probe.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from pendo_assets.settings import Settings  # noqa: E402
from pendo_assets_tests.e2e import settings_in  # noqa: E402
from pendo_assets_tests.servers import BucketServer, start_azurite, start_fake_gcs, start_moto  # noqa: E402
from pendo_assets_tests.snowflake_server import (SMALL_ARRAY_BINDING_THRESHOLD, FakeSnowflakeServer,  # noqa: E402
                                                 start_fakesnow)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Exports and warehouse in the test's own tmp_path, partitions from 2024-01-01."""
    return settings_in(tmp_path)


# Each server starts once per session, and only if a test asks for it; it is stopped by its PID at the end.
@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BucketServer]:
    server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BucketServer]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BucketServer]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def snowflake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSnowflakeServer]:
    server = start_fakesnow(tmp_path_factory.mktemp("fakesnow"), SMALL_ARRAY_BINDING_THRESHOLD)
    yield server
    server.stop()


@pytest.fixture
def snowflake_database(snowflake_server: FakeSnowflakeServer, request: pytest.FixtureRequest) -> str:
    """A new, empty database for this test alone, which the product assumes an admin created.

    It is left behind: fakesnow cannot DROP DATABASE, and it goes when the session's server stops.
    """
    return snowflake_server.create_database(request.node.name)
