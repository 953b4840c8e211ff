"""Fixtures shared by the test modules; plain helpers live in e2e.py, builders.py and dagster_dev.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pendo_assets.settings import Settings
from pendo_assets_tests.e2e import settings_in


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Exports and warehouse in the test's own tmp_path, partitions from 2024-01-01."""
    return settings_in(tmp_path)
