"""Dagster resources: where exports are read from (one resource per kind of store), and where tables are written.

Secrets reach a resource only as `dg.EnvVar`, read when a run or tick starts (the UI shows the variable's
name); everything else comes from each SDK's standard chain, which needs no setting here.
"""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

import dagster as dg

from pendo_assets.settings import DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS, Settings
from pendo_assets.stores import ExportStore
from pendo_assets.stores.bucket import GCS_KEY_VARIABLE, SCHEMES, BucketRoot, open_bucket_store
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse import is_snowflake, open_warehouse
from pendo_assets.warehouse.snowflake_config import parse_snowflake_url
from pendo_assets.warehouse.base import Warehouse


class ExportStoreResource(dg.ConfigurableResource):
    """The export root that holds `datasync/<subscriptionId>/<applicationId>/` folders. Read-only."""

    root: str

    def open(self) -> ExportStore:
        raise NotImplementedError("use the resource for the root's kind of store (see exports_resource)")


class LocalExports(ExportStoreResource):
    """A local folder: a copy of the bucket, or generated exports."""

    def open(self) -> ExportStore:
        return LocalExportStore(self.root)


class GCSExports(ExportStoreResource):
    """A GCS bucket, the customer's or Pendo's hosted one: a service-account key (dg.EnvVar), else ADC."""

    service_account_key: str | None = None

    def open(self) -> ExportStore:
        return open_bucket_store(BucketRoot.parse(self.root), gcs_service_account_key=self.service_account_key)


class S3Exports(ExportStoreResource):
    """An S3 bucket, read with the AWS chain (AWS_PROFILE or `profile`, keys, AWS_ENDPOINT_URL, roles)."""

    profile: str | None = None

    def open(self) -> ExportStore:
        return open_bucket_store(BucketRoot.parse(self.root), aws_profile=self.profile)


class AzureExports(ExportStoreResource):
    """An Azure Blob container: AZURE_STORAGE_CONNECTION_STRING, an account key or SAS, else DefaultAzureCredential."""

    account_name: str | None = None

    def open(self) -> ExportStore:
        return open_bucket_store(BucketRoot.parse(self.root), azure_account=self.account_name)


def exports_resource(root: str, env: Mapping[str, str] | None = None,
                     secrets_read_now: bool = False) -> ExportStoreResource:
    """The resource for `root`'s kind of store; the CLI opens the same one (`open_exports`). A secret is a
    dg.EnvVar, read when a run starts, unless `secrets_read_now`."""
    env = os.environ if env is None else env
    scheme = SCHEMES.get(urlsplit(root).scheme)
    if scheme == "gs":
        key = env.get(GCS_KEY_VARIABLE)
        return GCSExports(root=root, service_account_key=(key if secrets_read_now else dg.EnvVar(GCS_KEY_VARIABLE))
                          if key else None)
    if scheme == "s3":
        return S3Exports(root=root)
    if scheme == "az":
        return AzureExports(root=root)
    return LocalExports(root=root)


def open_exports(root: str) -> ExportStore:
    """The store a Dagster run would open for `root`, with its environment variables read now: directly, since
    Dagster's resolution builds a throwaway instance (about 0.4 s) each time, and a sync opens the store often."""
    return exports_resource(root, secrets_read_now=True).open()


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse the tables are written to."""

    def open(self) -> Warehouse:
        raise NotImplementedError("use the resource for the warehouse's kind (see warehouse_resource)")


class DuckDBWarehouseResource(WarehouseResource):
    """A DuckDB file, the embedded default: a path or duckdb:///abs/path."""

    location: str
    lock_wait_seconds: int = DEFAULT_WAREHOUSE_LOCK_WAIT_SECONDS

    def open(self) -> Warehouse:
        return open_warehouse(self.location, lock_wait_seconds=self.lock_wait_seconds)


def warehouse_resource(settings: Settings) -> WarehouseResource:
    if is_snowflake(settings.warehouse):
        # Imported only here: dagster-snowflake takes seconds to import, which a DuckDB warehouse never needs.
        from pendo_assets.defs.snowflake_resource import SnowflakeWarehouseResource

        target = parse_snowflake_url(settings.warehouse)
        return SnowflakeWarehouseResource(snowflake=target.resource(), location=settings.warehouse,
                                          stage=settings.snowflake_stage)
    return DuckDBWarehouseResource(location=settings.warehouse, lock_wait_seconds=settings.warehouse_lock_wait_seconds)
