"""All settings in one place: `PENDO_*` environment variables, which CLI flags override."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

DEFAULT_EXPORTS = "./data/exports"
DEFAULT_WAREHOUSE = "./data/pendo.duckdb"
DEFAULT_FIRST_DAY = date(2022, 1, 1)
DEFAULT_SENSOR_INTERVAL_SECONDS = 3600
DEFAULT_DAGSTER_HOME = ".dagster_home"

ENVIRONMENT = {
    "PENDO_EXPORTS": "export root: a local folder (default ./data/exports)",
    "PENDO_WAREHOUSE": "warehouse: a DuckDB file (default ./data/pendo.duckdb)",
    "PENDO_FIRST_DAY": "first daily partition, YYYY-MM-DD (default 2022-01-01)",
    "PENDO_SENSOR_INTERVAL": "seconds between manifest sensor ticks (default 3600)",
}


@dataclass(frozen=True)
class Settings:
    exports: str
    warehouse: str
    first_day: date
    sensor_interval_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if env is None else env
        settings = cls(
            exports=env.get("PENDO_EXPORTS") or DEFAULT_EXPORTS,
            warehouse=env.get("PENDO_WAREHOUSE") or DEFAULT_WAREHOUSE,
            first_day=_day(env.get("PENDO_FIRST_DAY"), "PENDO_FIRST_DAY") or DEFAULT_FIRST_DAY,
            sensor_interval_seconds=_seconds(env.get("PENDO_SENSOR_INTERVAL")) or DEFAULT_SENSOR_INTERVAL_SECONDS,
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        return replace(settings, exports=_absolute(settings.exports), warehouse=_absolute(settings.warehouse))


def _absolute(location: str) -> str:
    """Local paths become absolute, so Dagster's run processes find the same files wherever they start."""
    scheme = urlsplit(location).scheme
    if scheme and len(scheme) > 1 and scheme != "file":
        return location
    return str(Path(urlsplit(location).path if scheme == "file" else location).expanduser().resolve())


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a date like 2024-01-31") from None


def _seconds(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 30:
        raise ValueError(f"PENDO_SENSOR_INTERVAL={value!r} must be a whole number of seconds, at least 30")
    return int(value)
