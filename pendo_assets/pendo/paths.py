"""Where an export's files live, and the rules that keep a manifest from pointing anywhere else.

File names in a manifest are relative to their export folder. A name that is absolute, carries a
scheme, or climbs out with `..` would let a bad manifest read (and so load) files from another
export or bucket, so it is refused.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable
from urllib.parse import urlsplit

from pendo_assets.pendo.models import ExportEntry, ManifestError
from pendo_assets.pendo.tables import AppLocation


def check_relative_name(name: str, where: str) -> str:
    """Return `name` if it is a plain relative path inside its folder, else raise ManifestError."""
    problem = _relative_name_problem(name)
    if problem:
        raise ManifestError(f"{where}: file name {name!r} {problem}")
    return name


def _relative_name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if "\\" in name or "\x00" in name:
        return "contains a backslash or NUL"
    if "://" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is absolute; names must be relative to the export folder"
    segments = name.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "must not contain empty, '.' or '..' segments"
    return None


def export_folder(app: AppLocation, entry: ExportEntry, expected_bucket: str | None = None) -> str:
    """The export's folder relative to the export root, checked against its `rootUrl`.

    The folder is resolved next to the manifest (the last segment of `rootUrl`), so a bucket that
    was copied or moved still loads; but a `rootUrl` that names another app, or another bucket
    than the one being read, is refused.
    """
    where = f"{app.label}, export {entry.counter}"
    if not entry.root_url:
        raise ManifestError(f"{where}: no rootUrl, so the export folder is unknown")
    parts = urlsplit(entry.root_url)
    segments = [s for s in parts.path.split("/") if s]
    tail = [*app.folder.split("/"), entry.folder_name]
    if segments[-len(tail):] != tail or ".." in segments:
        raise ManifestError(f"{where}: rootUrl {entry.root_url!r} does not point into {app.folder}/")
    check_relative_name(entry.folder_name, f"{where}: rootUrl")
    if expected_bucket is not None and parts.scheme not in ("", "file") and parts.netloc != expected_bucket:
        raise ManifestError(
            f"{where}: rootUrl {entry.root_url!r} names bucket {parts.netloc!r}, "
            f"but this app's exports live in bucket {expected_bucket!r}")
    return f"{app.folder}/{entry.folder_name}"


def expected_bucket(store_bucket: str | None, entries: Iterable[ExportEntry]) -> str | None:
    """The bucket every rootUrl must name: the store's own, or for a local copy the one most exports name.

    A local copy cannot know which bucket it came from, but one export naming a different bucket
    than the rest is a manifest pointing somewhere it should not, and is refused like any other.
    """
    if store_bucket is not None:
        return store_bucket
    named = Counter(urlsplit(e.root_url).netloc for e in entries
                    if e.root_url and urlsplit(e.root_url).scheme not in ("", "file"))
    return named.most_common(1)[0][0] if named else None


def export_file_path(folder: str, name: str, where: str) -> str:
    return f"{folder}/{check_relative_name(name, where)}"
