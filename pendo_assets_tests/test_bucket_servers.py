"""The local bucket servers the tests start (fake-gcs-server, moto, Azurite), and the generator writing into them.

Every test runs against each of the three real server processes; see servers.py and the fixtures in conftest.py.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import fastavro
import fsspec
import pytest

from pendo_assets.generator import SCENARIOS, GeneratedExports, add_generate_arguments, generate, run_generate
from pendo_assets.generator.exports import BOM_NAME, MANIFEST_NAME
from pendo_assets_tests.servers import (
    AZURITE_ACCOUNT, BucketServer, listening_pid_is, start_fake_gcs, start_server, unique_bucket_name)

END_DAY = date(2025, 3, 1)
SERVERS = ["gcs_server", "s3_server", "azure_server"]
# What the generator's --destination calls each server's cloud.
DESTINATIONS = {"gs": "gcs", "s3": "s3", "az": "azure"}


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> BucketServer:
    return request.getfixturevalue(request.param)


@pytest.fixture
def bucket(server: BucketServer, request: pytest.FixtureRequest) -> str:
    return server.new_bucket(request.node.name)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> GeneratedExports:
    return generate(scenario="small", out_dir=tmp_path_factory.mktemp("small"), end_day=END_DAY)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def bucket_bytes(server: BucketServer, url: str) -> dict[str, bytes]:
    """Every object under `url`, by its path relative to it."""
    filesystem = server.filesystem()
    root = url.split("://", 1)[1].rstrip("/")
    return {name.removeprefix(f"{root}/"): data for name, data in filesystem.cat(filesystem.find(root)).items()}


def local_generation_like(server: BucketServer, bucket: str, scenario: str, out_dir: Path,
                          as_of: date | None = None) -> GeneratedExports:
    """`scenario` generated locally, with rootUrls naming `bucket` in the server's cloud and account."""
    return generate(scenario=scenario, out_dir=out_dir, end_day=END_DAY, as_of=as_of, bucket=bucket,
                    destination=DESTINATIONS[server.scheme], azure_account=AZURITE_ACCOUNT)


def test_a_server_is_the_recorded_process_listening_on_its_endpoint(server: BucketServer) -> None:
    assert server.process.poll() is None
    assert listening_pid_is(server.pid, urlsplit(server.endpoint).port)
    assert server.endpoint.startswith("http://127.0.0.1:")


def test_an_export_tree_uploads_then_lists_and_reads_back(server: BucketServer, bucket: str,
                                                         small_tree: GeneratedExports) -> None:
    local_root = Path(small_tree.out_dir)
    url = server.url(bucket, "exports")
    uploaded = server.upload_tree(local_root, url)
    assert len(uploaded) == len(tree_bytes(local_root))

    filesystem = server.filesystem()
    app = small_tree.apps[0]
    for folder in (f"datasync/{app.subscription_id}", f"datasync/{app.subscription_id}/{app.application_id}"):
        listing = filesystem.ls(f"{url}/{folder}", detail=True)
        assert {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["type"] for entry in listing} == {
            path.name: "directory" if path.is_dir() else "file" for path in (local_root / folder).iterdir()}

    manifest_url = f"{url}/{Path(app.manifest_path).relative_to(local_root).as_posix()}"
    assert json.loads(filesystem.cat_file(manifest_url)) == json.loads(Path(app.manifest_path).read_text())

    avro_path = max(local_root.rglob("*.avro"), key=lambda path: path.stat().st_size)
    local_bytes = avro_path.read_bytes()
    avro_url = f"{url}/{avro_path.relative_to(local_root).as_posix()}"
    middle = len(local_bytes) // 2
    # A block far smaller than the file, so the read after seek is a ranged request, not the whole object.
    with filesystem.open(avro_url, "rb", block_size=1024, cache_type="readahead") as remote:
        remote.seek(middle)
        assert remote.read(500) == local_bytes[middle:middle + 500]
        remote.seek(0)
        assert [*fastavro.reader(remote)] == [*fastavro.reader(io.BytesIO(local_bytes))]


def test_the_sdk_environment_reaches_the_server_only_inside_the_test(server: BucketServer, bucket: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server.filesystem().pipe_file(server.url(bucket, "hello.txt"), b"hello")
    before = {name: os.environ.get(name) for name in server.env}
    server.use_in(monkeypatch)
    from_environment = fsspec.filesystem(server.scheme, skip_instance_cache=True)
    assert from_environment.cat_file(server.url(bucket, "hello.txt")) == b"hello"
    monkeypatch.undo()
    assert {name: os.environ.get(name) for name in server.env} == before


def test_generating_into_a_bucket_writes_the_bytes_of_a_local_generation(
        server: BucketServer, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """visitors-accounts: the subscription's visitor and account folders go up like the app's."""
    server.use_in(monkeypatch)
    url = server.url(bucket)
    generated = generate(scenario="visitors-accounts", out_dir=url, end_day=END_DAY)
    local = local_generation_like(server, bucket, "visitors-accounts", tmp_path)
    assert bucket_bytes(server, url) == tree_bytes(tmp_path)

    def url_of(path: Path) -> str:
        return f"{url}/{path.relative_to(tmp_path).as_posix()}"

    (app,), (local_app,) = generated.apps, local.apps
    (subscription,), (local_subscription,) = generated.subscriptions, local.subscriptions
    assert generated.out_dir == url
    assert app.manifest_path == url_of(local_app.manifest_path)
    assert subscription.visitor_manifest_path == url_of(local_subscription.visitor_manifest_path)
    assert app.newly_written_exports == local_app.newly_written_exports == local_app.published_exports


def test_growing_as_of_under_a_prefix_replaces_the_manifest_and_leaves_complete_exports_untouched(
        server: BucketServer, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Midway and at the end of unlisted-folder, the bucket holds the local tree byte for byte, except that
    rootUrls name the prefix too; at the end, the export still uploading is there and in no manifest."""
    server.use_in(monkeypatch)
    url = server.url(bucket, "pendo/exports")
    filesystem = server.filesystem()
    steps = (END_DAY - timedelta(days=SCENARIOS["unlisted-folder"].export_days // 2), END_DAY)
    unprefixed, prefixed = f"/{bucket}/datasync/".encode(), f"/{bucket}/pendo/exports/datasync/".encode()
    versions_before: dict[str, tuple] = {}
    for as_of in steps:
        (app,) = generate(scenario="unlisted-folder", out_dir=url, end_day=END_DAY, as_of=as_of).apps
        (local_app,) = local_generation_like(server, bucket, "unlisted-folder", tmp_path, as_of=as_of).apps
        expected = {name: data.replace(unprefixed, prefixed) if name.endswith(MANIFEST_NAME) else data
                    for name, data in tree_bytes(tmp_path).items()}
        assert bucket_bytes(server, url) == expected
        assert prefixed in expected[Path(local_app.manifest_path).relative_to(tmp_path).as_posix()]
        assert app.newly_written_exports == local_app.newly_written_exports > 0
        versions = {name: object_version(info) for name, info in filesystem.find(url, detail=True).items()
                    if name.endswith(BOM_NAME)}
        assert {name: versions[name] for name in versions_before} == versions_before
        versions_before = versions
    (uploading,) = app.uploading_folders
    assert str(uploading).startswith(f"{url}/datasync/") and filesystem.ls(str(uploading))


def object_version(info: dict) -> tuple:
    """Changes when an object is written again (S3's ETag is the content's MD5, so its time is added)."""
    return info.get("generation"), info.get("etag"), info.get("ETag"), info.get("LastModified")


def test_generate_command_writes_into_a_bucket_url(gcs_server: BucketServer, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    gcs_server.use_in(monkeypatch)
    url = gcs_server.url(gcs_server.new_bucket("generate-command"), "prefix")
    assert run_generate(generate_arguments("--out", url, "--scenario", "missing-file",
                                           "--end-day", END_DAY.isoformat())) == 0
    output = capsys.readouterr().out
    assert f"under {url}:" in output and f"manifest: {url}/datasync/" in output
    missing_line = next(line for line in output.splitlines() if "missing on purpose" in line)
    missing_url = missing_line.split(": ")[-1]
    assert missing_url.startswith(f"{url}/datasync/") and not gcs_server.filesystem().exists(missing_url)
    manifest_names = [name for name in bucket_bytes(gcs_server, url) if name.endswith(MANIFEST_NAME)]
    assert manifest_names == ["datasync/5123456789012345/-323232/exportmanifest.json"]


@pytest.mark.parametrize("out, shown, hidden", [
    ("https://user:secret@example.com/x", "https://...", "secret"),
    ("gs://Not_A_Bucket!/x", "gs://...", "Not_A_Bucket"),
    ("s3://bucket/a/../b", "s3://...", "a/../b"),
])
def test_generate_command_refuses_what_is_not_a_bucket_naming_only_the_scheme(
        out: str, shown: str, hidden: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_generate(generate_arguments("--out", out, "--scenario", "small")) == 2
    error = capsys.readouterr().err
    assert shown in error and hidden not in error


def test_generate_command_names_a_missing_bucket(gcs_server: BucketServer, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    gcs_server.use_in(monkeypatch)
    url = gcs_server.url(unique_bucket_name("never-created"))
    assert run_generate(generate_arguments("--out", url, "--scenario", "small")) == 2
    assert f"error: cannot write {url}: bucket" in capsys.readouterr().err


def generate_arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    return parser.parse_args(argv)


def test_a_stopped_server_leaves_no_process(tmp_path: Path) -> None:
    server = start_fake_gcs(tmp_path)
    server.stop()
    assert server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


def test_a_server_that_cannot_start_fails_naming_itself_and_its_log(tmp_path: Path) -> None:
    command = ["sh", "-c", "echo 'flag provided but not defined: -bogus' >&2; exit 3"]
    with pytest.raises(pytest.fail.Exception) as failure:
        start_server("broken-server", "gs", command, "http://127.0.0.1:9", "http://127.0.0.1:9/", tmp_path,
                     env={}, storage_options={})
    message = str(failure.value)
    assert "broken-server did not start: it exited with status 3" in message
    assert "flag provided but not defined: -bogus" in message
