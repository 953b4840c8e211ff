from __future__ import annotations

from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pendo_assets.stores.base import MissingExportFile


class LocalExportStore:
    """An export root on the local file system (a copy of the bucket, or the demo's generated tree)."""

    location = None  # a local copy does not know which bucket it came from

    def __init__(self, root: str | Path):
        root = str(root)
        path = urlsplit(root).path if root.startswith("file://") else root
        self.root = Path(path).resolve()
        self.url = str(self.root)  # messages name local files by their plain path

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root):
            raise ValueError(f"{path!r} resolves outside the export root {self.root}")
        return full

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            raise MissingExportFile(f"{self.url}/{path} does not exist") from None

    def open(self, path: str, block_size: int | None = None) -> BinaryIO:
        try:
            return self._path(path).open("rb")
        except FileNotFoundError:
            raise MissingExportFile(f"{self.url}/{path} does not exist") from None

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def fingerprint(self, path: str) -> str:
        try:
            stat = self._path(path).stat()
        except FileNotFoundError:
            raise MissingExportFile(f"{self.url}/{path} does not exist") from None
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def list_files(self, folder: str) -> set[str]:
        base = self._path(folder)
        return {path.relative_to(self.root).as_posix() for path in base.rglob("*") if path.is_file()}

    def folder_exists(self, prefix: str) -> bool:
        return self._path(prefix).is_dir()

    def list_folders(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
