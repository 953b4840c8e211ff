"""The bucket store on its own, against each real local server: what the loader and the sensor ask of it."""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timedelta, timezone

import boto3
import pytest
import requests
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from dagster import build_sensor_context, instance_for_test

from pendo_assets import definitions
from pendo_assets.generator import generate
from pendo_assets.loading.loader import load_day
from pendo_assets.pendo.tables import AppLocation, EventTable
from pendo_assets.stores.base import MissingExportFile, StoreReadError, StoreUnavailable
from pendo_assets.stores.bucket import BucketExportStore, BucketRoot, ReadAhead, open_bucket_store
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets_tests.e2e import END_DAY
from pendo_assets_tests.servers import AZURITE_ACCOUNT, AZURITE_KEY, BucketServer, free_port

STORES = ["gcs_server", "s3_server", "azure_server"]


@pytest.fixture(params=STORES)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> BucketServer:
    server = request.getfixturevalue(request.param)
    server.use_in(monkeypatch)
    return server


@pytest.fixture
def root(server: BucketServer) -> BucketRoot:
    """A bucket with a few objects under the prefix `pendo/exports`."""
    bucket = server.new_bucket("store")
    filesystem = server.filesystem()
    filesystem.pipe({f"{bucket}/pendo/exports/datasync/1/a/exportmanifest.json": b'{"exports": []}',
                     f"{bucket}/pendo/exports/datasync/1/a/export1/big.bin": PAYLOAD,
                     f"{bucket}/pendo/exports/datasync/1/b/exportmanifest.json": b"{}",
                     f"{bucket}/elsewhere/x.json": b"{}"})
    return BucketRoot.parse(server.url(bucket, "pendo/exports"))


PAYLOAD = os.urandom(300_000)


def test_a_root_url_names_its_bucket_and_path(root: BucketRoot) -> None:
    store = open_bucket_store(root)
    assert store.url == root.url and store.location.bucket == root.bucket and store.location.prefix == "pendo/exports"


def test_files_folders_and_fingerprints_are_read_under_the_root_only(root: BucketRoot) -> None:
    store = open_bucket_store(root)
    assert store.read_bytes("datasync/1/a/exportmanifest.json") == b'{"exports": []}'
    assert store.list_folders("datasync") == ["1"] and store.list_folders("datasync/1") == ["a", "b"]
    assert store.folder_exists("") and store.folder_exists("datasync") and not store.folder_exists("nothing")
    assert store.exists("datasync/1/a/export1/big.bin") and not store.exists("datasync/1/a/nope.avro")
    assert not store.exists("elsewhere/x.json")
    before = store.fingerprint("datasync/1/a/exportmanifest.json")
    assert before == store.fingerprint("datasync/1/a/exportmanifest.json") and before.startswith("15:")
    with pytest.raises(MissingExportFile, match=r"datasync/1/a/nope.avro does not exist"):
        store.read_bytes("datasync/1/a/nope.avro")
    with pytest.raises(MissingExportFile, match="does not exist"):
        store.open("datasync/1/a/nope.avro")


def test_a_stream_reads_in_small_blocks_ahead_and_seeks_back(root: BucketRoot) -> None:
    store = open_bucket_store(root)
    key = root.key("datasync/1/a/export1/big.bin")
    with ReadAhead(lambda start, end: store.fs.cat_file(key, start=start, end=end), len(PAYLOAD), "big.bin",
                   block_size=64_000, depth=2) as stream:
        assert stream.read(10) == PAYLOAD[:10]
        stream.seek(0)
        assert stream.read(70_000) == PAYLOAD[:70_000]
        assert stream.tell() == 70_000
        stream.seek(250_000)
        assert stream.read() == PAYLOAD[250_000:]
        assert stream.read(5) == b""
    with store.open("datasync/1/a/export1/big.bin") as stream:
        assert io.BufferedReader(stream).read() == PAYLOAD


def test_a_file_replaced_while_it_is_read_fails_naming_it(server: BucketServer, root: BucketRoot) -> None:
    store = open_bucket_store(root)
    with store.open("datasync/1/a/export1/big.bin") as stream:
        stream.block_size, stream.depth = 16_000, 1  # so most of the file is read after the replacement
        stream.seek(1)
        assert stream.read(10) == PAYLOAD[1:11]
        key = root.key("datasync/1/a/export1/big.bin")
        server.filesystem().pipe(key, os.urandom(len(PAYLOAD)))
        with pytest.raises(StoreReadError, match=r"export1/big.bin changed while it was being read"):
            stream.read()


def store_with_sas(azure_server: BucketServer, monkeypatch: pytest.MonkeyPatch, bucket: str,
                   permission: ContainerSasPermissions) -> BucketExportStore:
    """The store of `bucket` with nothing but a SAS granting `permission`, as a customer might configure it."""
    sas = generate_container_sas(AZURITE_ACCOUNT, bucket, account_key=AZURITE_KEY, permission=permission,
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"BlobEndpoint={azure_server.endpoint};SharedAccessSignature={sas}")
    return open_bucket_store(BucketRoot.parse(f"az://{bucket}"))


def test_a_refused_read_names_the_object_the_operation_and_the_missing_permission(
        azure_server: BucketServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SAS that may list but not read: Azurite refuses the read with 403, as Azure does."""
    bucket = azure_server.new_bucket("refused")
    azure_server.filesystem().pipe(f"{bucket}/datasync/1/a/exportmanifest.json", b"{}")
    store = store_with_sas(azure_server, monkeypatch, bucket, ContainerSasPermissions(list=True))

    assert store.list_folders("datasync/1") == ["a"]
    with pytest.raises(StoreUnavailable) as refused:
        store.read_bytes("datasync/1/a/exportmanifest.json")
    assert str(refused.value).startswith(f"permission denied to read az://{bucket}/datasync/1/a/exportmanifest.json: "
                                         "the credentials need blob read (Storage Blob Data Reader, or a SAS with r);")
    assert "sig=" not in str(refused.value)


@pytest.mark.slow  # the S3 SDK retries a refused connection for about 5 s per request
def test_an_unreachable_bucket_leaves_the_code_location_loaded_and_fails_the_ticks_with_the_reason(
        s3_server: BucketServer, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_in(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("PENDO_EXPORTS", "s3://pendo-exports/datasync-root")
    reason = "cannot list s3://pendo-exports/datasync-root: Could not connect to the endpoint URL"

    with instance_for_test() as instance:
        defs = definitions.defs()
        assert defs.resolve_all_asset_specs() == []
        (discovery,) = defs.sensors
        with pytest.raises(Exception, match=reason):
            discovery.evaluate_tick(build_sensor_context(instance=instance, definitions=defs,
                                                         resources={"exports": defs.resources["exports"]}))

        monkeypatch.setenv("PENDO_APPS", "5123456789012345/-323232")
        defs = definitions.defs()
        manifest_sensor = next(s for s in defs.sensors if s.name.endswith("_manifest"))
        with pytest.raises(Exception, match="cannot read s3://pendo-exports/datasync-root/datasync/5123456789012345/"
                                            "-323232/exportmanifest.json: Could not connect"):
            manifest_sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs,
                                                               resources={"exports": defs.resources["exports"]}))


def test_every_file_under_a_folder_is_listed_relative_to_the_root(root: BucketRoot) -> None:
    store = open_bucket_store(root)
    assert store.list_files("datasync/1/a") == {"datasync/1/a/exportmanifest.json", "datasync/1/a/export1/big.bin"}
    assert store.list_files("datasync/9") == set()


def test_a_bucket_that_grants_reads_but_no_listing_is_checked_file_by_file(
        azure_server: BucketServer, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = azure_server.new_bucket("read-only")
    azure_server.filesystem().pipe(f"{bucket}/datasync/1/a/export1/x.avro", b"x")
    store = store_with_sas(azure_server, monkeypatch, bucket, ContainerSasPermissions(read=True))

    assert store.list_files("datasync/1/a/export1") is None
    assert store.exists("datasync/1/a/export1/x.avro")
    with pytest.raises(StoreUnavailable, match="also answers so for an object that does not exist"):
        store.exists("datasync/1/a/export1/y.avro")


def test_a_day_checks_its_files_with_one_listing_per_export_folder(gcs_server: BucketServer, tmp_path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gcs_server.use_in(monkeypatch)
    bucket = gcs_server.new_bucket("listing")
    generated = generate(scenario="small", out_dir=str(tmp_path / "local"), end_day=END_DAY, bucket=bucket)
    gcs_server.upload_tree(tmp_path / "local", gcs_server.url(bucket))
    app = AppLocation(generated.apps[0].subscription_id, generated.apps[0].application_id)
    store = open_bucket_store(BucketRoot.parse(gcs_server.url(bucket)))
    calls: list[tuple[str, str]] = []
    for method in ("exists", "list_files"):
        real = getattr(store, method)
        monkeypatch.setattr(store, method, lambda path, real=real, method=method: (calls.append((method, path)),
                                                                                    real(path))[1])
    day = max(day for day, ids in generated.apps[0].truth.allevents.items() if ids)

    results = load_day(store, DuckDBWarehouse(tmp_path / "w.duckdb"), app, day, list(EventTable), "run")

    folders = {path for method, path in calls if method == "list_files"}
    assert [method for method, _ in calls] == ["list_files"] * len(folders)
    assert len(folders) == len({c for result in results.values() for c in result.touched_by}) >= 1
    assert results[EventTable.ALLEVENTS].rows == len(generated.apps[0].truth.allevents[day])


def test_an_s3_read_the_policy_denies_names_the_object_and_s3_getobject(
        s3_server: BucketServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforces IAM once asked to: a user whose policy allows listing only is refused the read."""
    s3_server.use_in(monkeypatch)
    bucket = s3_server.new_bucket("denied")
    s3_server.filesystem().pipe(f"{bucket}/datasync/1/a/exportmanifest.json", b"{}")
    iam = boto3.client("iam")
    iam.create_user(UserName=bucket)
    iam.put_user_policy(UserName=bucket, PolicyName="list-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}]}))
    key = iam.create_access_key(UserName=bucket)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    enforce_iam = f"{s3_server.endpoint}/moto-api/reset-auth"
    requests.post(enforce_iam, data=b"0", timeout=10).raise_for_status()
    try:
        store = open_bucket_store(BucketRoot.parse(f"s3://{bucket}"))
        assert store.list_files("datasync/1/a") == {"datasync/1/a/exportmanifest.json"}
        with pytest.raises(StoreUnavailable) as refused:
            store.read_bytes("datasync/1/a/exportmanifest.json")
    finally:  # the server is shared by the session: back to accepting anyone
        requests.post(enforce_iam, data=str(10 ** 12).encode(), timeout=10).raise_for_status()
    assert str(refused.value).startswith(f"permission denied to read s3://{bucket}/datasync/1/a/exportmanifest.json: "
                                         "the credentials need s3:GetObject;")
    assert key["SecretAccessKey"] not in str(refused.value)
