"""Generating straight into a bucket: `gs://bucket/prefix`, `s3://...` or `az://container/prefix`.

The tree is generated into a local temporary folder as usual and then uploaded with fsspec: simplest for a
generator, and the local path stays byte for byte what it was. Endpoints and credentials come only from the
SDKs' standard environment (application default credentials or STORAGE_EMULATOR_HOST, the AWS chain or
AWS_ENDPOINT_URL, AZURE_STORAGE_CONNECTION_STRING or the AZURE_STORAGE_* variables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import fsspec

from pendo_assets.generator.exports import BOM_NAME, MANIFEST_NAME, DestinationKind

KINDS = {"gs": DestinationKind.GCS, "s3": DestinationKind.S3, "az": DestinationKind.AZURE}
# Lowercase letters, digits, '.', '_' and '-': what GCS, S3 and Azure containers have in common, give or take.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
# datasync/<subscription>/<app, visitor or account>/<export folder>: a manifest sits one level above.
EXPORT_FOLDER_DEPTH = 4


def is_bucket_url(out: Path | str) -> bool:
    return isinstance(out, str) and "://" in out


@dataclass(frozen=True)
class BucketOutput:
    """Where the generator writes: a bucket and the path in it that plays the export root."""

    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BucketOutput:
        """Only the scheme is ever repeated in an error: a URL may carry credentials."""
        parts = urlsplit(url)
        if parts.scheme not in KINDS:
            raise ValueError(f"--out {parts.scheme}://... is not a bucket the generator writes to; "
                             "use a local folder, gs://, s3:// or az://")
        segments = [segment for segment in parts.path.split("/") if segment]
        if not BUCKET_NAME.match(parts.netloc) or parts.query or parts.fragment or any(
                segment in (".", "..") for segment in segments):
            raise ValueError(f"--out {parts.scheme}://... needs a bucket name of lowercase letters, digits, '.', "
                             f"'_' or '-' and an optional path without . or .. segments, like "
                             f"{parts.scheme}://my-bucket/pendo")
        return cls(parts.scheme, parts.netloc, "/".join(segments))

    @property
    def kind(self) -> DestinationKind:
        return KINDS[self.scheme]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.key('')}"

    def key(self, relative: str) -> str:
        """The object `relative` (to the export root) as fsspec names it: bucket/prefix/relative."""
        return "/".join(part for part in (self.bucket, self.prefix, relative) if part)

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """A new client from the SDK's standard environment, so a changed environment is never ignored."""
        return fsspec.filesystem(self.scheme, skip_instance_cache=True)


def azure_account(filesystem: fsspec.AbstractFileSystem) -> str:
    """The storage account an adlfs client writes to, whether named alone or in a connection string."""
    return filesystem.account_name or filesystem.service_client.account_name


def upload(staging: Path, output: BucketOutput, filesystem: fsspec.AbstractFileSystem) -> set[str]:
    """Upload the staged tree in the order Pendo writes it, and return the export folders completed now.

    An export's files go before its bill of materials and the manifests go last, so a reader never finds
    an entry or a bill of materials whose files are not all there yet; an object appears whole or not at
    all, as `write_json_atomically` replaces a local manifest. A folder whose bill of materials is in
    the bucket already is left untouched: Pendo never rewrites a completed export, and a reader may rely
    on its objects' generations and ETags.
    """
    root = output.key("")
    try:
        names = filesystem.find(root)
    except FileNotFoundError:  # a missing prefix lists as empty: it is the bucket that is missing
        raise FileNotFoundError(f"bucket {output.bucket!r} does not exist; create it first") from None
    completed_before = {name.removeprefix(f"{root}/").rsplit("/", 1)[0]
                        for name in names if name.endswith(f"/{BOM_NAME}")}
    export_files, bills, manifests = [], [], []
    for path in sorted(staging.rglob("*")):
        relative = path.relative_to(staging).as_posix()
        segments = relative.split("/")
        if not path.is_file() or "/".join(segments[:EXPORT_FOLDER_DEPTH]) in completed_before:
            continue
        if len(segments) == EXPORT_FOLDER_DEPTH and segments[-1] == MANIFEST_NAME:
            manifests.append(relative)
        elif len(segments) == EXPORT_FOLDER_DEPTH + 1 and segments[-1] == BOM_NAME:
            bills.append(relative)
        else:
            export_files.append(relative)
    for batch in (export_files, bills, manifests):
        if batch:
            filesystem.put([str(staging / relative) for relative in batch],
                           [output.key(relative) for relative in batch])
    return {relative.rsplit("/", 1)[0] for relative in bills}
