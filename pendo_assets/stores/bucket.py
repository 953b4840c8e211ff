"""Exports read where Pendo delivers them: a GCS bucket (the customer's, or Pendo's hosted one), S3 or Azure Blob.

One store over the fsspec family (gcsfs, s3fs, adlfs) rather than three hand-written clients: they give
ranged reads and the SDKs' standard credential chains. Their read-ahead caches prefetch too much
(gcsfs's default up to 256 MiB per file) or ask for ranges past the end (which the GCS emulator refuses),
and only s3fs pins a read to the object seen at open, so a stream here is `ReadAhead` over ranged reads
pinned to the generation (GCS) or ETag (S3, Azure) seen at open: BLOCK_SIZE bytes per request, the next
blocks downloading on a thread while the decoder works on this one, at most READ_AHEAD_BLOCKS in memory.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator
from urllib.parse import urlsplit

import fsspec

from pendo_assets.errors import UserError
from pendo_assets.pendo.paths import RootLocation
from pendo_assets.stores.base import MissingExportFile, StoreReadError, StoreUnavailable

# 16 MiB per ranged GET amortises a round trip over far more bytes than the decoder takes at once
# (8 MB chunks); two of them in memory per open file keep a load's footprint flat (see README).
BLOCK_SIZE = 16 * 1024 * 1024
READ_AHEAD_BLOCKS = 2
SCHEMES = {"gs": "gs", "gcs": "gs", "s3": "s3", "az": "az", "abfs": "az"}
# What a reader's credentials need, per store and operation, to name in a permission error.
PERMISSIONS = {
    "gs": {"read": "storage.objects.get (roles/storage.objectViewer or legacyObjectReader)",
           "list": "storage.objects.list (roles/storage.objectViewer)"},
    "s3": {"read": "s3:GetObject", "list": "s3:ListBucket"},
    "az": {"read": "blob read (Storage Blob Data Reader, or a SAS with r)",
           "list": "blob list (Storage Blob Data Reader, or a SAS with l)"},
}


# A service-account key (its JSON) for GCS, when neither Application Default Credentials nor
# GOOGLE_APPLICATION_CREDENTIALS fit, e.g. for the account Pendo granted its hosted bucket to.
GCS_KEY_VARIABLE = "PENDO_GCS_SERVICE_ACCOUNT_KEY"


@dataclass(frozen=True)
class BucketRoot:
    """An export root in a bucket: `gs://bucket/prefix`, `s3://...`, `az://container/prefix` (or `abfs://`)."""

    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "BucketRoot":
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme)
        if scheme is None:
            raise UserError(f"the export root ({parts.scheme}://...) is not a bucket pendo-datasync reads; use "
                            "gs://, s3://, az:// or a local folder")
        bucket = parts.netloc.split("@", 1)[0]  # abfs://container@account.dfs.core.windows.net/...
        if not bucket or parts.query or parts.fragment:
            raise UserError(f"the export root {scheme}://{bucket}... needs a bucket and an optional path, like "
                            f"{scheme}://my-bucket/pendo, without ? or #")
        segments = [s for s in parts.path.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise UserError(f"the export root {scheme}://{bucket}/{'/'.join(segments)} must not contain . or ..")
        return cls(scheme, bucket, "/".join(segments))

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def key(self, path: str) -> str:
        """The filesystem path of `path` (relative to the root), as fsspec names it: bucket/prefix/path."""
        return "/".join(part for part in (self.bucket, self.prefix, path.strip("/")) if part)


class BucketExportStore:
    """An export root in a bucket, read through an fsspec filesystem that already holds its credentials.

    Nothing here asks for bucket-level metadata, and reading a file needs no listing: Pendo's hosted bucket
    may grant only object reads.
    """

    def __init__(self, root: BucketRoot, filesystem: fsspec.AbstractFileSystem, account: str | None = None):
        self.root, self.fs = root, filesystem
        self.url = root.url
        self.location = RootLocation(root.bucket, root.prefix, account)

    def read_bytes(self, path: str) -> bytes:
        with self._errors("read", path):
            return self.fs.cat_file(self.root.key(path))

    def open(self, path: str, block_size: int | None = None) -> BinaryIO:
        key, block_size = self.root.key(path), block_size or BLOCK_SIZE
        with self._errors("read", path):
            if self.root.scheme == "s3":  # s3fs's file sends If-Match with the ETag it saw at open
                handle = self.fs.open(key, "rb", cache_type="none")
                return ReadAhead(_read_range(handle), handle.size, f"{self.url}/{path}", block_size,
                                 close=handle.close)
            info = self.fs.info(key)
        if info.get("type") == "directory":
            raise MissingExportFile(f"{self.url}/{path} is a folder, not a file")
        return ReadAhead(self._pinned_fetch(key, info), info["size"], f"{self.url}/{path}", block_size)

    def _pinned_fetch(self, key: str, info: dict) -> Callable[[int, int], bytes]:
        """Ranged reads that fail, rather than mix two objects' bytes, once the object seen in `info` is replaced."""
        if self.root.scheme == "gs":
            generation = info["generation"]
            return lambda start, end: self.fs.cat_file(key, start=start, end=end, generation=generation)
        from azure.core import MatchConditions
        from fsspec.asyn import sync

        container, blob = key.split("/", 1)

        async def download(start: int, end: int) -> bytes:
            async with self.fs.service_client.get_blob_client(container, blob) as client:
                stream = await client.download_blob(offset=start, length=end - start, etag=info["etag"],
                                                    match_condition=MatchConditions.IfNotModified)
                return await stream.readall()

        return lambda start, end: sync(self.fs.loop, download, start, end)

    def exists(self, path: str) -> bool:
        try:
            self.fingerprint(path)
        except MissingExportFile:
            return False
        return True

    def fingerprint(self, path: str) -> str:
        """The object's generation (GCS) or ETag (S3, Azure), with its size: one metadata request."""
        with self._errors("read", path):
            info = self.fs.info(self.root.key(path))
        if info.get("type") == "directory":
            raise MissingExportFile(f"{self.url}/{path} is a folder, not a file")
        version = info.get("generation") or info.get("ETag") or info.get("etag") or info.get("last_modified")
        return f"{info.get('size')}:{version}"

    def list_folders(self, prefix: str) -> list[str]:
        with self._errors("list", prefix):
            try:
                entries = self.fs.ls(self.root.key(prefix), detail=True, refresh=True)
            except FileNotFoundError:
                return []
        return sorted(entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries
                      if entry.get("type") == "directory")

    def list_files(self, folder: str) -> set[str] | None:
        try:
            keys = self.fs.find(self.root.key(folder))
        except Exception as exc:
            if _refused(exc):
                return None  # a bucket that grants reads only, such as Pendo's hosted one may
            with self._errors("list", folder):
                raise
        root = self.root.key("") + "/"
        return {key.removeprefix(root) for key in keys}

    def folder_exists(self, prefix: str) -> bool:
        with self._errors("list", prefix):
            try:
                return bool(self.fs.ls(self.root.key(prefix), detail=False, refresh=True))
            except FileNotFoundError:
                return False

    @contextmanager
    def _errors(self, operation: str, path: str) -> Iterator[None]:
        """Say which object, which operation and, for a refusal, which permission the credentials lack."""
        where = f"{self.url}/{path}".rstrip("/")
        try:
            yield
        except FileNotFoundError:
            raise MissingExportFile(f"{where} does not exist") from None
        except Exception as exc:
            if not _refused(exc):
                raise StoreUnavailable(f"cannot {operation} {where}: {_first_line(exc)}; check the network, the "
                                       "endpoint and the credentials") from None
            raise StoreUnavailable(
                f"permission denied to {operation} {where}: the credentials need "
                f"{PERMISSIONS[self.root.scheme][operation]}; where listing is not granted, the store also "
                f"answers so for an object that does not exist ({_first_line(exc)})") from None


def _refused(exc: Exception) -> bool:
    """Permission denied: gcsfs and s3fs raise PermissionError, the Azure SDK an error with status 403."""
    return isinstance(exc, PermissionError) or getattr(exc, "status_code", None) == 403


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def open_bucket_store(root: BucketRoot, gcs_service_account_key: str | None = None, aws_profile: str | None = None,
                      azure_account: str | None = None) -> BucketExportStore:
    """The store over the filesystem for `root`'s kind of bucket, with the SDK's standard credentials.

    GCS: the key if given, else Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud,
    the metadata server), or STORAGE_EMULATOR_HOST. S3: the AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID,
    AWS_ENDPOINT_URL, ...). Azure: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with
    AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, else DefaultAzureCredential.
    Filesystems are never shared between stores (fsspec would reuse one across settings otherwise).
    """
    if root.scheme == "gs":
        # The plain filesystem: gcsfs's experimental one first asks for the bucket's type, a bucket-level call.
        from gcsfs.core import GCSFileSystem

        token = _service_account_info(gcs_service_account_key) if gcs_service_account_key else None
        return BucketExportStore(root, GCSFileSystem(token=token, skip_instance_cache=True))
    if root.scheme == "s3":
        from s3fs import S3FileSystem

        return BucketExportStore(root, S3FileSystem(profile=aws_profile, skip_instance_cache=True))
    from adlfs import AzureBlobFileSystem

    filesystem = AzureBlobFileSystem(account_name=azure_account, skip_instance_cache=True)
    return BucketExportStore(root, filesystem, account=filesystem.account_name)


def _service_account_info(key: str) -> dict:
    try:
        info = json.loads(key)
    except ValueError:
        info = None
    if not isinstance(info, dict) or "client_email" not in info:
        raise UserError(f"{GCS_KEY_VARIABLE} is not a service-account key; set it to the key file's JSON "
                        "content, or unset it to use Application Default Credentials")
    return info


def _read_range(handle) -> Callable[[int, int], bytes]:
    def read(start: int, end: int) -> bytes:
        handle.seek(start)
        return handle.read(end - start)
    return read


class ReadAhead(io.RawIOBase):
    """An object read by `fetch(start, end)` in `block_size` requests on a thread, at most `depth` blocks ahead.

    Seeking outside the block at hand restarts the reading there (the Avro reader seeks only to re-read a
    header). Any error of the read, such as the object changing after it was opened, names the file.
    Written here because fsspec's caches either read ahead without bound or on the reading thread only.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, where: str, block_size: int = BLOCK_SIZE,
                 depth: int = READ_AHEAD_BLOCKS, close: Callable[[], None] = lambda: None):
        self.fetch, self.where, self._close = fetch, where, close
        self.size, self.block_size, self.depth = size, block_size, depth
        self._position = 0
        self._block, self._block_start = b"", 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._blocks: queue.Queue = queue.Queue(depth)
        self._fetch_from(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset, io.SEEK_END: self.size + offset}[whence]
        if not self._block_start <= position <= self._block_start + len(self._block):
            self._fetch_from(position)
        self._position = position
        return position

    def read(self, size: int = -1) -> bytes:
        wanted = self.size - self._position if size is None or size < 0 else min(size, self.size - self._position)
        parts = []
        while wanted > 0:
            offset = self._position - self._block_start
            if offset >= len(self._block):
                self._next_block()
                continue
            part = self._block[offset:offset + wanted]
            parts.append(part)
            self._position += len(part)
            wanted -= len(part)
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._halt()
        self._close()
        super().close()

    def _next_block(self) -> None:
        start, data, error = self._blocks.get()
        if error is not None:
            raise error
        self._block, self._block_start = data, start

    def _fetch_from(self, position: int) -> None:
        self._halt()
        self._stop = threading.Event()
        self._blocks = queue.Queue(self.depth)
        self._block, self._block_start = b"", position
        self._thread = threading.Thread(target=self._fetch, args=(position, self._stop, self._blocks),
                                        name="bucket-read-ahead", daemon=True)
        self._thread.start()

    def _fetch(self, position: int, stop: threading.Event, blocks: queue.Queue) -> None:
        start = position
        try:
            while start < self.size and not stop.is_set():
                data = self.fetch(start, min(start + self.block_size, self.size))
                if not data:
                    raise EOFError(f"the object ended at byte {start} of {self.size}")
                _put(blocks, (start, data, None), stop)
                start += len(data)
        except Exception as exc:
            _put(blocks, (start, b"", _read_error(self.where, start, exc)), stop)

    def _halt(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def _put(blocks: queue.Queue, item: tuple, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            blocks.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _read_error(where: str, position: int, exc: Exception) -> StoreReadError:
    # The pinned version is gone: s3fs raises FileExpired, Azure ResourceModifiedError, and GCS answers 404
    # for the generation seen at open.
    if type(exc).__name__ in ("FileExpired", "ResourceModifiedError") or isinstance(exc, FileNotFoundError):
        return StoreReadError(f"{where} changed while it was being read (it is not the object seen when the "
                              "read began, or it was deleted); the next load reads it again")
    return StoreReadError(f"reading {where} failed at byte {position}: {_first_line(exc)}")
