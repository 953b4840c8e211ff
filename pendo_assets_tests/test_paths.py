from dataclasses import replace

import pytest

from pendo_assets.pendo.models import ManifestError
from pendo_assets.pendo.paths import RootLocation, check_relative_name, expected_location, export_folder
from pendo_assets.pendo.tables import AppLocation
from pendo_assets_tests.builders import export

APP = AppLocation("1", "-323232")


@pytest.mark.parametrize("name", ["allevents.avro", "2024-01-01/matchedEvents/Page/-x_Y.avro", "a-000.avro"])
def test_plain_relative_names_are_accepted(name):
    assert check_relative_name(name, "here") == name


@pytest.mark.parametrize("name", ["", "../other/allevents.avro", "a/../../b.avro", "/etc/passwd", "./a.avro",
                                  "gs://other-bucket/a.avro", "a//b.avro", "C:\\x.avro", "a\\..\\b", "a/./b.avro",
                                  "a\x00.avro", "a\nb.avro", "a\x7f.avro", "..%2Fother%2Fa.avro", "a%2fb.avro",
                                  "%2E%2E/a.avro", "a%5Cb.avro", "trailing/"])
def test_names_escaping_the_export_folder_are_refused(name):
    with pytest.raises(ManifestError, match="here: file name"):
        check_relative_name(name, "here")


def test_export_folder_is_resolved_next_to_the_manifest():
    assert export_folder(APP, export(4)) == "datasync/1/-323232/export4"


@pytest.mark.parametrize("root_url", [
    "gs://bucket/datasync/1/999/export4",
    "gs://bucket/datasync/1/-323232/..",
    "gs://bucket/datasync/1/-323232/sub/export4",
])
def test_root_url_pointing_elsewhere_is_refused(root_url):
    entry = export(4)
    entry = type(entry)(**{**entry.__dict__, "root_url": root_url})
    with pytest.raises(ManifestError, match="export 4"):
        export_folder(APP, entry)


def test_root_url_in_another_bucket_is_refused_when_the_bucket_is_known():
    with pytest.raises(ManifestError, match="names bucket 'bucket', but this app's exports live in bucket 'customer'"):
        export_folder(APP, export(4), RootLocation("customer"))


@pytest.mark.parametrize("root_url, root", [
    ("gs://bucket/datasync/1/-323232/export4", RootLocation("bucket", "")),
    ("s3://bucket/pendo/exports/datasync/1/-323232/export4", RootLocation("bucket", "pendo/exports")),
    ("https://acme.blob.core.windows.net/bucket/pendo/datasync/1/-323232/export4",
     RootLocation("bucket", "pendo", "acme")),
    ("https://acme.blob.core.windows.net/bucket/datasync/1/-323232/export4", RootLocation("bucket", "", None)),
])
def test_root_url_under_the_configured_bucket_and_path_is_accepted(root_url, root):
    assert export_folder(APP, replace(export(4), root_url=root_url), root) == "datasync/1/-323232/export4"


@pytest.mark.parametrize("root_url, root, message", [
    ("gs://bucket/other/datasync/1/-323232/export4", RootLocation("bucket", ""), "not under the export root's path"),
    ("gs://bucket/datasync/1/-323232/export4", RootLocation("bucket", "pendo"), "not under the export root's path"),
    ("s3://bucket/pendox/datasync/1/-323232/export4", RootLocation("bucket", "pendo"), "not under"),
    ("https://other.blob.core.windows.net/bucket/datasync/1/-323232/export4", RootLocation("bucket", "", "acme"),
     "names bucket 'bucket' of account 'other'"),
    ("https://acme.blob.core.windows.net/container2/datasync/1/-323232/export4", RootLocation("bucket", "", "acme"),
     "names bucket 'container2' of account 'acme'"),
])
def test_root_url_in_another_bucket_account_or_path_is_refused(root_url, root, message):
    with pytest.raises(ManifestError, match=message):
        export_folder(APP, replace(export(4), root_url=root_url), root)


def test_a_local_copy_expects_the_bucket_most_exports_name():
    entries = [export(1), export(2), replace(export(3), root_url="gs://elsewhere/datasync/1/-323232/export3")]
    assert expected_location(None, entries) == RootLocation("bucket")
    assert expected_location(RootLocation("customer", "p"), entries) == RootLocation("customer", "p")
    assert expected_location(None, [replace(export(1), root_url="/local/datasync/1/-323232/export1")]) is None
    with pytest.raises(ManifestError, match="names bucket 'elsewhere', but this app's exports live in bucket 'bucket'"):
        export_folder(APP, entries[2], expected_location(None, entries))
