from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from pendo_assets.errors import UserError

# Buckets an adapter is planned for; any other URL scheme is refused as unknown.
COMING_BUCKET_SCHEMES = ("gs", "s3", "az")


class MissingExportFile(FileNotFoundError):
    """A file a manifest lists is not in the store."""


class ExportStore(Protocol):
    """Read-only access to an export root; paths are relative to it, with forward slashes.

    Nothing is ever written here: the root may be Pendo's read-only bucket.
    """

    url: str
    bucket: str | None

    def read_bytes(self, path: str) -> bytes: ...

    def open(self, path: str) -> BinaryIO:
        """A seekable binary stream of the file, read as it is consumed."""
        ...

    def exists(self, path: str) -> bool: ...

    def fingerprint(self, path: str) -> str:
        """Changes whenever the file does (size and modification time, or a generation/etag)."""
        ...

    def list_folders(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of `prefix`."""
        ...

    def folder_exists(self, prefix: str) -> bool:
        """Whether `prefix` ("" for the root) is a folder; in a bucket, whether anything is under it."""
        ...


def open_export_store(root: str) -> ExportStore:
    from pendo_assets.stores.local import LocalExportStore

    return LocalExportStore(export_root(root))


def export_root(root: str) -> str:
    """The root as the stores read it: a local folder becomes an absolute path, so Dagster's run processes
    find the same files wherever they start. A URL no store reads is refused, naming only its scheme (a URL
    may carry credentials)."""
    local = local_path(root)
    if local is not None:
        return str(local)
    scheme = urlsplit(root).scheme
    if scheme in COMING_BUCKET_SCHEMES:
        raise UserError(
            f"reading {scheme}:// buckets directly is not supported yet; copy the bucket's datasync/ folder "
            "to disk (gsutil -m rsync -r, aws s3 sync, azcopy sync) and set --exports or PENDO_EXPORTS to "
            "the folder above it")
    raise UserError(f"the export root ({scheme}://...) is not a local folder, the only kind supported "
                    f"({'://, '.join(COMING_BUCKET_SCHEMES)}:// are coming); set --exports or PENDO_EXPORTS "
                    "to the local folder that holds datasync/")


def local_path(location: str) -> Path | None:
    """A plain path, `~/...` or a file:// URL as an absolute path; None for any other URL."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(parts.path).resolve()
    # A one-letter scheme is a Windows drive (C:\...), not a URL.
    if not parts.scheme or len(parts.scheme) == 1:
        return Path(location).expanduser().resolve()
    return None
