from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from pendo_assets.errors import UserError
from pendo_assets.pendo.paths import RootLocation


class MissingExportFile(FileNotFoundError):
    """A file a manifest lists is not in the store."""


class StoreUnavailable(UserError):
    """The store could not be read: permission denied, or the endpoint unreachable. The message says which."""


class StoreReadError(OSError):
    """A file that could not be read whole: it changed or vanished mid-read, or the store stopped answering.

    The message names the file; the load that needed it fails and changes nothing.
    """


class ExportStore(Protocol):
    """Read-only access to an export root; paths are relative to it, with forward slashes.

    Nothing is ever written here: the root may be Pendo's read-only bucket.
    """

    url: str
    # The bucket and path the root is, which every manifest's rootUrl must name; None for a local copy.
    location: RootLocation | None

    def read_bytes(self, path: str) -> bytes: ...

    def open(self, path: str, block_size: int | None = None) -> BinaryIO:
        """A seekable binary stream of the file, read as it is consumed.

        `block_size`: bytes per request where the store reads in ranges; a header needs far fewer than rows.
        """
        ...

    def exists(self, path: str) -> bool: ...

    def fingerprint(self, path: str) -> str:
        """Changes whenever the file does (size and modification time, or a generation/etag)."""
        ...

    def list_folders(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of `prefix`."""
        ...

    def list_files(self, folder: str) -> set[str] | None:
        """Every file under `folder`, at any depth, as paths relative to the root; None if listing is refused."""
        ...

    def folder_exists(self, prefix: str) -> bool:
        """Whether `prefix` ("" for the root) is a folder; in a bucket, whether anything is under it."""
        ...


def export_root(root: str) -> str:
    """The root as the stores read it: a local folder becomes an absolute path, so Dagster's run processes
    find the same files wherever they start; a bucket URL is checked and normalised. Any other URL is
    refused, naming only its scheme (a URL may carry credentials)."""
    from pendo_assets.stores.bucket import SCHEMES, BucketRoot

    local = local_path(root)
    if local is not None:
        return str(local)
    scheme = urlsplit(root).scheme
    if scheme in SCHEMES:
        return BucketRoot.parse(root).url
    raise UserError(f"the export root ({scheme}://...) is neither a local folder nor a gs://, s3://, az:// "
                    "bucket; set --exports or PENDO_EXPORTS to where Pendo delivers the exports")


def local_path(location: str) -> Path | None:
    """A plain path, `~/...` or a file:// URL as an absolute path; None for any other URL."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(parts.path).resolve()
    # A one-letter scheme is a Windows drive (C:\...), not a URL.
    if not parts.scheme or len(parts.scheme) == 1:
        return Path(location).expanduser().resolve()
    return None
