"""One benchmark method, run in its own process by benchmarks.load; prints its result as JSON.

Every method handles the same rows: every Avro file of the benchmark day (allevents and matched files).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cramjam
import duckdb
import fastavro
import pandas as pd
import pyarrow as pa

from pendo_assets.loading.loader import load_day, read_manifest
from pendo_assets.pendo import avro
from pendo_assets.pendo.avro import read_batches, read_container
from pendo_assets.pendo.discovery import discover_apps
from pendo_assets.pendo.tables import EventTable
from pendo_assets.stores.local import LocalExportStore
from pendo_assets.warehouse.duckdb import DuckDBWarehouse


def day_files(root: Path) -> tuple[LocalExportStore, object, object, list[tuple[str, Path]]]:
    """The store, app, day and (table, path) of every file of the benchmark day."""
    store = LocalExportStore(root)
    (app,) = discover_apps(store)
    (entry,) = read_manifest(store, app).exports
    (period,) = entry.bom.periods
    folder = root / app.folder / entry.folder_name
    files = [(EventTable.ALLEVENTS.value, folder / name) for name in period.all_events.files]
    files += [(m.matchable_type.table.value, folder / name) for m in period.matched_events for name in m.files]
    return store, app, period.day, files


def inflate(files: list[tuple[str, Path]], _: Path) -> int:
    rows = 0
    for _, path in files:
        with path.open("rb") as fo:
            container = read_container(fo, str(path))
            codec = container.metadata.get("avro.codec", b"null")
            for count, data in container.blocks:
                if codec == b"deflate":
                    zlib.decompress(data, -15)
                elif codec == b"snappy":
                    cramjam.snappy.decompress_raw(data[:-4])
                rows += count
    return rows


def decode(files: list[tuple[str, Path]], _: Path) -> int:
    rows = 0
    for _, path in files:
        with path.open("rb") as fo:
            _, batches = read_batches(fo, str(path))
            rows += sum(batch.num_rows for batch in batches)
    return rows


def ingest(files: list[tuple[str, Path]], database: Path, timed) -> int:
    tables = {}
    for table, path in files:
        with path.open("rb") as fo:
            _, batches = read_batches(fo, str(path), batch_rows=1_000_000)
            tables.setdefault(table, []).append(pa.Table.from_batches(list(batches)))
    tables = {t: pa.concat_tables(parts, promote_options="default") for t, parts in tables.items()}
    if avro._DECODER is not None:
        avro._DECODER._stop()  # so the decoding above is not counted in the timed block's CPU
    with timed:
        conn = duckdb.connect(str(database))
        conn.begin()
        for name, arrow in tables.items():
            conn.register("rows", arrow)
            conn.execute(f'CREATE TABLE "{name}" AS SELECT * FROM rows')
            conn.unregister("rows")
        conn.commit()
        conn.execute("CHECKPOINT")
        conn.close()
    return sum(t.num_rows for t in tables.values())


def naive(files: list[tuple[str, Path]], database: Path) -> int:
    conn = duckdb.connect(str(database))
    rows = 0
    for table, path in files:
        with path.open("rb") as fo:
            frame = pd.DataFrame(list(fastavro.reader(fo)))
        conn.register("frame", frame)
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM frame LIMIT 0')
        conn.execute(f'INSERT INTO "{table}" SELECT * FROM frame')
        conn.unregister("frame")
        rows += len(frame)
        del frame
    conn.execute("CHECKPOINT")
    conn.close()
    return rows


class Timer:
    """Wall time of the block, and CPU time of this process and its children (the decoder) from its start."""
    seconds = 0.0

    def __enter__(self):
        self.started, self.cpu_started = time.perf_counter(), os.times()

    def __exit__(self, *_):
        self.seconds = time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        """Call after the block; stops the decoder process first so its CPU time is counted."""
        if avro._DECODER is not None:
            avro._DECODER._stop()
        now, then = os.times(), self.cpu_started
        return sum(getattr(now, f) - getattr(then, f) for f in ("user", "system", "children_user", "children_system"))


def main(method: str, root: Path) -> None:
    store, app, day, files = day_files(root)
    timer = Timer()
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "bench.duckdb"
        if method == "ingest":
            rows = ingest(files, database, timer)
        else:
            with timer:
                if method == "inflate":
                    rows = inflate(files, database)
                elif method == "decode":
                    rows = decode(files, database)
                elif method == "naive":
                    rows = naive(files, database)
                else:
                    loads = load_day(store, DuckDBWarehouse(database), app, day, list(EventTable), "benchmark")
                    rows = sum(load.rows for load in loads.values())
    file_mb = sum(path.stat().st_size for _, path in files) / 1e6
    print(json.dumps({"seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds(), "rows": rows,
                      "file_mb": file_mb, "files": len(files)}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
