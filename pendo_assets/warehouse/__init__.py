"""Where tables live. Every backend implements `Warehouse`; `open_warehouse` picks one by URL:
a DuckDB file (the embedded default) or snowflake://<user>@<account>/<database>?warehouse=..&role=.."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pendo_assets.errors import UserError
from pendo_assets.settings import DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS
from pendo_assets.stores.base import local_path

if TYPE_CHECKING:
    from pendo_assets.warehouse.base import Warehouse

SNOWFLAKE_SCHEME = "snowflake"


def open_warehouse(location: str, lock_wait_seconds: float = DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS,
                   snowflake_stage: str | None = None) -> "Warehouse":
    """The warehouse at `location`; nothing is created or opened until a session starts.

    `lock_wait_seconds`: how long a DuckDB file another program holds is waited for.
    `snowflake_stage`: the external stage over the export bucket, from which Snowflake reads the files itself.
    """
    # Imported here, as the base module is above: settings check locations without loading DuckDB or Arrow.
    if is_snowflake(location):
        from pendo_assets.warehouse.snowflake import SnowflakeWarehouse
        from pendo_assets.warehouse.snowflake_config import parse_snowflake_url

        return SnowflakeWarehouse(parse_snowflake_url(location), stage=snowflake_stage)
    from pendo_assets.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(warehouse_location(location), lock_wait_seconds=lock_wait_seconds)


def is_snowflake(location: str) -> bool:
    return urlsplit(location).scheme == SNOWFLAKE_SCHEME


def warehouse_location(location: str) -> str:
    """A DuckDB file as an absolute path, from a path, `~/...`, file:// or duckdb:///abs/path; a snowflake://
    URL as it reads back from its parts (checked, without secrets). Any other URL is refused, naming only its
    scheme (a URL may carry credentials)."""
    parts = urlsplit(location)
    if parts.scheme == SNOWFLAKE_SCHEME:
        from pendo_assets.warehouse.snowflake_config import parse_snowflake_url

        return parse_snowflake_url(location).describe()
    if parts.scheme == "duckdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise UserError("a duckdb:// warehouse needs an absolute path after three slashes, like "
                            "duckdb:///data/pendo.duckdb; or set --warehouse or PENDO_WAREHOUSE to a plain "
                            "path")
        return str(local_path(parts.path))
    local = local_path(location)
    if local is not None:
        return str(local)
    raise UserError(f"the warehouse ({parts.scheme}://...) is not one pendo-datasync can write; set "
                    "--warehouse or PENDO_WAREHOUSE to a DuckDB file path, duckdb:///abs/path or "
                    "snowflake://<user>@<account>/<database>")
