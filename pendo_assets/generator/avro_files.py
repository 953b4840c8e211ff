"""Avro container files written record by record, with per-file codecs and reproducible bytes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from fastavro.write import Writer

from pendo_assets.generator.ids import derived_fraction, sync_marker

BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class WrittenFile:
    relative_path: str
    rows: int
    size: int


@dataclass
class ExportFolder:
    """One export folder being filled; `files` lists every Avro file written into it so far."""

    path: Path
    codec_weights: tuple[tuple[str, int], ...]
    files: list[WrittenFile] = field(default_factory=list)

    def open(self, relative_path: str, schema: dict) -> AvroSink:
        return AvroSink(self, relative_path, schema)

    def write(self, relative_path: str, schema: dict, records: Iterable[dict]) -> WrittenFile:
        sink = self.open(relative_path, schema)
        for record in records:
            sink.write(record)
        return sink.close()

    def codec_for(self, relative_path: str) -> str:
        codecs = [codec for codec, _ in self.codec_weights]
        cumulative = list(accumulate(weight for _, weight in self.codec_weights))
        target = derived_fraction(self.path.name, relative_path) * cumulative[-1]
        return next(codec for codec, bound in zip(codecs, cumulative) if target < bound)


class AvroSink:
    def __init__(self, folder: ExportFolder, relative_path: str, schema: dict) -> None:
        self._folder = folder
        self.relative_path = relative_path
        path = folder.path / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        self._writer = Writer(
            self._file, schema, codec=folder.codec_for(relative_path), sync_interval=BLOCK_BYTES,
            sync_marker=sync_marker(folder.path.name, relative_path))
        self.rows = 0

    def write(self, record: dict) -> None:
        self._writer.write(record)
        self.rows += 1

    def close(self) -> WrittenFile:
        self._writer.flush()
        self._file.close()
        size = (self._folder.path / self.relative_path).stat().st_size
        written = WrittenFile(self.relative_path, self.rows, size)
        self._folder.files.append(written)
        return written


class SplitAvroSink:
    """Spreads rows over parts of fixed row counts; a part planned with zero rows is still written."""

    def __init__(self, folder: ExportFolder, parts: list[tuple[str, int]], schema: dict) -> None:
        self._folder = folder
        self._pending = list(parts)
        self._schema = schema
        self._current: AvroSink | None = None
        self._capacity = 0
        self.written: list[WrittenFile] = []

    def write(self, record: dict) -> None:
        while self._current is None or self._current.rows >= self._capacity:
            if not self._pending:
                raise ValueError("more rows than the planned parts hold")
            self._open_next_part()
        self._current.write(record)

    def close(self) -> list[WrittenFile]:
        while self._pending:
            self._open_next_part()
        self._close_current_part()
        return self.written

    def _open_next_part(self) -> None:
        self._close_current_part()
        relative_path, self._capacity = self._pending.pop(0)
        self._current = self._folder.open(relative_path, self._schema)

    def _close_current_part(self) -> None:
        if self._current is not None:
            self.written.append(self._current.close())
            self._current = None
