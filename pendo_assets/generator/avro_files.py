"""Avro container files written record by record, with per-file codecs and reproducible bytes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from fastavro.write import Writer

from pendo_assets.generator.ids import derived_fraction, sync_marker
from pendo_assets.generator.spec import DEFAULT_BLOCK_BYTES


@dataclass(frozen=True)
class WrittenFile:
    relative_path: str
    rows: int
    size: int


@dataclass(frozen=True)
class SplitLimits:
    max_rows: int | None
    max_bytes: int


@dataclass(frozen=True)
class PartFormat:
    """The writer schema of a file part, and how a record takes that schema's shape (None: as it is)."""

    schema: dict
    encode: Callable[[dict], dict] | None = None


@dataclass
class ExportFolder:
    """One export folder being filled; `files` lists every Avro file written into it so far."""

    path: Path
    codec_weights: tuple[tuple[str, int], ...]
    block_bytes: int = DEFAULT_BLOCK_BYTES
    files: list[WrittenFile] = field(default_factory=list)

    def write(self, relative_path: str, schema: dict, records: Iterable[dict]) -> WrittenFile:
        sink = AvroSink(self, relative_path, schema)
        for record in records:
            sink.write(record)
        return self.add(sink.close())

    def add(self, written: WrittenFile) -> WrittenFile:
        self.files.append(written)
        return written

    def codec_for(self, relative_path: str) -> str:
        codecs = [codec for codec, _ in self.codec_weights]
        cumulative = list(accumulate(weight for _, weight in self.codec_weights))
        target = derived_fraction(self.path.name, relative_path) * cumulative[-1]
        return next(codec for codec, bound in zip(codecs, cumulative) if target < bound)


class AvroSink:
    """One Avro file; records are encoded into blocks of `block_bytes` as they arrive."""

    def __init__(self, folder: ExportFolder, relative_path: str, schema: dict) -> None:
        self.relative_path = relative_path
        self.path = folder.path / relative_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._writer = Writer(
            self._file, schema, codec=folder.codec_for(relative_path), sync_interval=folder.block_bytes,
            sync_marker=sync_marker(folder.path.name, relative_path))
        self.rows = 0

    @property
    def bytes_on_disk(self) -> int:
        """Bytes of the blocks written so far (the block being filled is not counted yet)."""
        return self._file.tell()

    def write(self, record: dict) -> None:
        self._writer.write(record)
        self.rows += 1

    def close(self) -> WrittenFile:
        self._writer.flush()
        self._file.close()
        return WrittenFile(self.relative_path, self.rows, self.path.stat().st_size)


class SplitAvroSink:
    """One logical file cut into parts at the row or byte limit; `<stem>.avro` while it is a single part,
    `<stem>-000.avro`, `<stem>-001.avro`, ... once there are several (Pendo's `-NNN` split naming).
    Part n is written in `formats[n % len(formats)]`.

    `empty_part_after`: once that many rows are written, a part with no rows is inserted (format spec
    §7.1: a loader must accept a zero-row file). `always_numbered` names even a single part `-000`.
    """

    def __init__(self, folder: ExportFolder, stem: str, formats: tuple[PartFormat, ...], limits: SplitLimits,
                 empty_part_after: int | None = None, always_numbered: bool = False) -> None:
        self._folder = folder
        self._stem = stem
        self._formats = formats
        self._format = formats[0]
        self._limits = limits
        self._empty_part_after = empty_part_after
        self._always_numbered = always_numbered
        self._finished: list[WrittenFile] = []
        self._current: AvroSink | None = None
        self.rows = 0

    def write(self, record: dict) -> None:
        if self.rows == self._empty_part_after:
            self._start_part()
            self._start_part()
            self._empty_part_after = None
        current = self._current
        if current is None or self._is_full(current):
            current = self._start_part()
        encode = self._format.encode
        current.write(record if encode is None else encode(record))
        self.rows += 1

    def close(self) -> list[WrittenFile]:
        """Registers the parts with the folder; a file that never received a row is still written."""
        if self._current is None and not self._finished:
            self._start_part()
        if self._current is not None:
            self._finished.append(self._current.close())
            self._current = None
        return [self._folder.add(part) for part in self._finished]

    def _is_full(self, part: AvroSink) -> bool:
        limits = self._limits
        return (limits.max_rows is not None and part.rows >= limits.max_rows) or (
            part.bytes_on_disk >= limits.max_bytes)

    def _start_part(self) -> AvroSink:
        if self._current is not None:
            self._finished.append(self._current.close())
        index = len(self._finished)
        if index == 1 and not self._always_numbered:
            self._finished[0] = _renamed(self._folder, self._finished[0], self._part_name(0))
        name = self._part_name(index) if index or self._always_numbered else f"{self._stem}.avro"
        self._format = self._formats[index % len(self._formats)]
        self._current = AvroSink(self._folder, name, self._format.schema)
        return self._current

    def _part_name(self, index: int) -> str:
        return f"{self._stem}-{index:03d}.avro"


def _renamed(folder: ExportFolder, written: WrittenFile, relative_path: str) -> WrittenFile:
    """The bytes (sync marker, codec) stay those chosen for the old name, which is just as deterministic."""
    os.replace(folder.path / written.relative_path, folder.path / relative_path)
    return WrittenFile(relative_path, written.rows, written.size)
