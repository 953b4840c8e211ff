"""The Dagster resource for a Snowflake warehouse. A module of its own because its field's type,
dagster-snowflake's `SnowflakeResource`, imports the Snowflake connector and Snowpark (seconds), which only a
snowflake:// warehouse needs; `warehouse_resource` imports this module for one."""

from __future__ import annotations

from typing import Optional

from dagster_snowflake import SnowflakeResource

from pendo_assets.defs.resources import WarehouseResource
from pendo_assets.warehouse.base import Warehouse
from pendo_assets.warehouse.snowflake_config import parse_snowflake_url


class SnowflakeWarehouseResource(WarehouseResource):
    """A Snowflake database, through dagster-snowflake's resource, whose secret is a dg.EnvVar; `stage`, when set,
    is the external stage over the export bucket from which Snowflake reads the files itself."""

    snowflake: SnowflakeResource
    location: str
    stage: Optional[str] = None

    def open(self) -> Warehouse:
        from pendo_assets.warehouse.snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse(parse_snowflake_url(self.location), stage=self.stage, resource=self.snowflake)
