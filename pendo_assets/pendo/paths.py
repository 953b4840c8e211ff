"""Where an export's files live, and the rules that keep a manifest from pointing anywhere else.

File names in a manifest are relative to their export folder. A name that is absolute, carries a
scheme, climbs out with `..`, or hides a separator (backslash, control character, percent-encoding)
would let a bad manifest read (and so load) files from another export or bucket, so it is refused:
S3, for one, stores `a/../b` as a literal key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from pendo_assets.pendo.models import ExportEntry, ManifestError
from pendo_assets.pendo.tables import AppLocation

AZURE_BLOB_HOST_SUFFIX = ".blob.core.windows.net"
# A name carrying these would climb out of its folder once a store or a client decodes it.
ENCODED_SEPARATORS = ("%2f", "%5c", "%2e")


@dataclass(frozen=True)
class RootLocation:
    """Where exports live in a bucket: the bucket (Azure: container), the path under it, the Azure account.

    None means unknown, and accepts any: a local copy of a bucket knows neither its prefix nor its account.
    """

    bucket: str
    prefix: str | None = None
    account: str | None = None


def check_relative_name(name: str, where: str) -> str:
    """Return `name` if it is a plain relative path inside its folder, else raise ManifestError."""
    problem = _relative_name_problem(name)
    if problem:
        raise ManifestError(f"{where}: file name {name!r} {problem}")
    return name


def _relative_name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if "\\" in name:
        return "contains a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if any(encoded in name.lower() for encoded in ENCODED_SEPARATORS):
        return "contains a percent-encoded separator or dot"
    if "://" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is absolute; names must be relative to the export folder"
    segments = name.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "must not contain empty, '.' or '..' segments"
    return None


def root_url_location(root_url: str) -> tuple[RootLocation, list[str]] | None:
    """The bucket a rootUrl names and the path segments under it; None for a local path.

    gs:// and s3:// name their bucket first; Azure's https://<account>.blob.core.windows.net/<container>/...
    names the account in the host and the container first in the path.
    """
    parts = urlsplit(root_url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme in ("", "file"):
        return None
    if parts.scheme == "https" and parts.netloc.endswith(AZURE_BLOB_HOST_SUFFIX) and segments:
        return RootLocation(segments[0], account=parts.netloc.removesuffix(AZURE_BLOB_HOST_SUFFIX)), segments[1:]
    return RootLocation(parts.netloc), segments


def export_folder(app: AppLocation, entry: ExportEntry, expected: RootLocation | None = None) -> str:
    """The export's folder relative to the export root, checked against its `rootUrl`.

    The folder is resolved next to the manifest (the last segment of `rootUrl`), so a bucket that was
    copied or moved still loads; but a `rootUrl` that names another app, another bucket (Azure: account
    or container) or another path than the one being read is refused.
    """
    where = f"{app.label}, export {entry.counter}"
    if not entry.root_url:
        raise ManifestError(f"{where}: no rootUrl, so the export folder is unknown")
    segments = [s for s in urlsplit(entry.root_url).path.split("/") if s]
    tail = [*app.folder.split("/"), entry.folder_name]
    if segments[-len(tail):] != tail or ".." in segments:
        raise ManifestError(f"{where}: rootUrl {entry.root_url!r} does not point into {app.folder}/")
    check_relative_name(entry.folder_name, f"{where}: rootUrl")
    located = root_url_location(entry.root_url)
    if expected is not None and located is not None:
        named, path = located
        if named.bucket != expected.bucket or (named.account and expected.account
                                               and named.account != expected.account):
            raise ManifestError(
                f"{where}: rootUrl {entry.root_url!r} names bucket {_describe(named)}, "
                f"but this app's exports live in bucket {_describe(expected)}")
        if expected.prefix is not None and path[:-len(tail)] != [s for s in expected.prefix.split("/") if s]:
            raise ManifestError(
                f"{where}: rootUrl {entry.root_url!r} is not under the export root's path "
                f"{expected.prefix or '/'!r} in bucket {expected.bucket!r}")
    return f"{app.folder}/{entry.folder_name}"


def expected_location(store_location: RootLocation | None, entries: Iterable[ExportEntry]) -> RootLocation | None:
    """Where every rootUrl must point: the store's own bucket, or for a local copy the one most exports name.

    A local copy cannot know which bucket it came from, but one export naming a different bucket
    than the rest is a manifest pointing somewhere it should not, and is refused like any other.
    """
    if store_location is not None:
        return store_location
    named = Counter(located[0].bucket for located in map(root_url_location, (e.root_url for e in entries if e.root_url))
                    if located is not None)
    return RootLocation(named.most_common(1)[0][0]) if named else None


def _describe(location: RootLocation) -> str:
    return repr(location.bucket) + (f" of account {location.account!r}" if location.account else "")


def export_file_path(folder: str, name: str, where: str) -> str:
    return f"{folder}/{check_relative_name(name, where)}"
