from __future__ import annotations

from typing import BinaryIO, Protocol
from urllib.parse import urlsplit


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


def open_export_store(root: str) -> ExportStore:
    from pendo_assets.stores.local import LocalExportStore

    scheme = urlsplit(root).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        return LocalExportStore(root)
    raise ValueError(
        f"export root {root!r}: {scheme}:// buckets are not supported yet; "
        "use a local folder (copy the bucket with gsutil/aws s3 sync/azcopy meanwhile)")
