"""All settings in one place: `PENDO_*` environment variables, which CLI flags override.

A value the pipeline cannot use is refused here, naming the variable and the accepted form, before
anything touches disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date
from typing import Mapping

from pendo_assets.errors import UserError
from pendo_assets.pendo.tables import AppLocation
from pendo_assets.stores.base import export_root, local_path

DEFAULT_EXPORTS = "./data/exports"
DEFAULT_WAREHOUSE = "./data/pendo.duckdb"
DEFAULT_FIRST_DAY = date(2022, 1, 1)
DEFAULT_SENSOR_INTERVAL_SECONDS = 3600
DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS = 120
DEFAULT_DAGSTER_HOME = ".dagster_home"
MINIMUM_SENSOR_INTERVAL_SECONDS = 30

ENVIRONMENT = {
    "PENDO_EXPORTS": "export root: a local folder holding datasync/ (default ./data/exports)",
    "PENDO_WAREHOUSE": "warehouse: a DuckDB file path or duckdb:///abs/path (default ./data/pendo.duckdb), or "
                       "snowflake://<user>@<account>/<database>?warehouse=<wh>&role=<role>, its secret in "
                       "SNOWFLAKE_PASSWORD, SNOWFLAKE_PRIVATE_KEY or SNOWFLAKE_PRIVATE_KEY_PATH",
    "PENDO_SNOWFLAKE_STAGE": "<db>.<schema>.<stage>: an external stage over the export bucket, so Snowflake reads "
                             "the files itself (default: rows are decoded here and staged)",
    "PENDO_FIRST_DAY": "first daily partition, YYYY-MM-DD (default 2022-01-01)",
    "PENDO_SENSOR_INTERVAL": "seconds between manifest sensor ticks, at least "
                             f"{MINIMUM_SENSOR_INTERVAL_SECONDS} (default {DEFAULT_SENSOR_INTERVAL_SECONDS})",
    "PENDO_WAREHOUSE_LOCK_WAIT": "seconds to wait for a warehouse another program holds "
                                 f"(default {DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS})",
    "PENDO_APPS": "apps to load, as <subscriptionId>/<applicationId>,...; needed where the bucket cannot be "
                  "listed, such as Pendo's hosted one (default: every app found under datasync/)",
    "PENDO_DEBUG": "1 shows Python tracebacks instead of one-line messages (same as --debug)",
}


@dataclass(frozen=True)
class Settings:
    exports: str
    warehouse: str
    first_day: date
    sensor_interval_seconds: int
    warehouse_lock_wait_seconds: int
    # Configured apps; empty means every app discovery finds by listing datasync/.
    apps: tuple[AppLocation, ...] = ()
    snowflake_stage: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        # Imported here: the warehouse package takes its defaults from this module.
        from pendo_assets.warehouse import warehouse_location

        env = os.environ if env is None else env
        settings = cls(
            exports=env.get("PENDO_EXPORTS") or DEFAULT_EXPORTS,
            warehouse=env.get("PENDO_WAREHOUSE") or DEFAULT_WAREHOUSE,
            first_day=_day(env, "PENDO_FIRST_DAY", DEFAULT_FIRST_DAY),
            sensor_interval_seconds=_whole_seconds(env, "PENDO_SENSOR_INTERVAL",
                                                   DEFAULT_SENSOR_INTERVAL_SECONDS,
                                                   minimum=MINIMUM_SENSOR_INTERVAL_SECONDS),
            warehouse_lock_wait_seconds=_whole_seconds(env, "PENDO_WAREHOUSE_LOCK_WAIT",
                                                       DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS, minimum=0),
            apps=_apps(env.get("PENDO_APPS")),
            snowflake_stage=env.get("PENDO_SNOWFLAKE_STAGE") or None,
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings = replace(settings, exports=export_root(settings.exports),
                           warehouse=warehouse_location(settings.warehouse))
        if settings.snowflake_stage:
            _check_stage(settings)
        return settings


def _check_stage(settings: Settings) -> None:
    from pendo_assets.warehouse import is_snowflake
    from pendo_assets.warehouse.snowflake_sql import StagePath

    if not is_snowflake(settings.warehouse):
        raise UserError("PENDO_SNOWFLAKE_STAGE names a Snowflake stage, but the warehouse is not Snowflake; unset it, "
                        "or set PENDO_WAREHOUSE to a snowflake:// URL")
    if local_path(settings.exports) is not None:
        raise UserError("PENDO_SNOWFLAKE_STAGE reads the exports from their bucket, but they are in a local folder; "
                        "unset it (the rows are then decoded here and staged), or point PENDO_EXPORTS at the bucket")
    try:
        StagePath(settings.snowflake_stage, "check")
    except ValueError:
        raise UserError(f"PENDO_SNOWFLAKE_STAGE={settings.snowflake_stage!r} is not a stage name; set it as "
                        "<database>.<schema>.<stage>, like PENDO.RAW.PENDO_EXPORTS") from None


def debug_requested(env: Mapping[str, str] | None = None) -> bool:
    """PENDO_DEBUG: read on its own, so a traceback can be asked for even when another setting is wrong."""
    env = os.environ if env is None else env
    return env.get("PENDO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _day(env: Mapping[str, str], name: str, default: date) -> date:
    value = env.get(name)
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not a date; set it as YYYY-MM-DD, like 2024-01-31") from None


def _apps(value: str | None) -> tuple[AppLocation, ...]:
    apps = []
    for item in (value or "").split(","):
        if not item.strip():
            continue
        subscription_id, _, application_id = item.strip().partition("/")
        if not all(_plain_id(part) for part in (subscription_id, application_id)):
            raise UserError(f"PENDO_APPS has {item.strip()!r}; list apps as <subscriptionId>/<applicationId>, "
                            "separated by commas, like 5123456789012345/-323232")
        apps.append(AppLocation(subscription_id, application_id))
    return tuple(sorted(set(apps)))


def _plain_id(part: str) -> bool:
    """A subscription or app id becomes a folder name and a schema name: one plain path segment."""
    return bool(part) and part not in (".", "..") and all(c.isalnum() or c in "-_" for c in part)


def _whole_seconds(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.strip().isdigit() or int(value) < minimum:
        raise UserError(f"{name}={value!r} is not valid; set it to a whole number of seconds, "
                        f"at least {minimum}")
    return int(value)
