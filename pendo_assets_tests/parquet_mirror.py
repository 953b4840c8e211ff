"""A Parquet mirror of an Avro export tree, standing in for the user's bucket behind a Snowflake stage in tests and
benchmarks: fakesnow has no Avro COPY and cannot reach a bucket, so its stage is a file:// folder holding the same
rows as Parquet, at the same relative paths, in the raw encodings Snowflake's Avro reader gives a COPY (dates and
timestamps as integers)."""

from __future__ import annotations

from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from pendo_assets.warehouse.snowflake_sql import identifier, string_literal

STAGE_SCHEMA, STAGE_NAME = "RAW", "EXPORTS"

MATCHABLE_FIELD = "matchableId"
EPOCH_DAY = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_UNITS = {"timestamp-millis": timedelta(milliseconds=1), "timestamp-micros": timedelta(microseconds=1)}
PARQUET_TYPES = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
                  "double": pa.float64(), "string": pa.string(), "bytes": pa.binary(), "enum": pa.string()}


# --- The Parquet mirror of an Avro export tree -------------------------------------------------------------------

def mirror_as_parquet(export_root: Path, mirror_root: Path) -> None:
    """Write every Avro file under `export_root` as Parquet at the same relative path (`.avro` name kept) under
    `mirror_root`, so a COPY names the same files through either stage."""
    for avro_file in export_root.rglob("*.avro"):
        mirror_file(avro_file, mirror_root / avro_file.relative_to(export_root))


def mirror_file(avro_file: Path, parquet_file: Path) -> None:
    """One Avro file's rows as a COPY from an Avro stage sees them: each field in its raw Avro encoding."""
    with avro_file.open("rb") as handle:
        reader = fastavro.reader(handle)
        fields = reader.writer_schema["fields"]
        records = list(reader)
    columns = {f["name"]: raw_values([r[f["name"]] for r in records], f["type"], f["name"]) for f in fields}
    # Snowflake reads an Avro field a file lacks as NULL; fakesnow fails on a Parquet field a file lacks, and a
    # matched slice's COPY reads matchableId (COALESCE with the slice's id) whether or not its files have it.
    columns.setdefault(MATCHABLE_FIELD, pa.nulls(len(records), pa.string()))
    parquet_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), parquet_file)


def raw_values(values: list[Any], avro_type: Any, name: str) -> pa.Array:
    """fastavro's values turned back into the field's Avro encoding: days for a date, integers in the unit for
    a timestamp (fastavro converts logical types as it reads)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"field {name!r}: the mirror has no stand-in for a multi-type union")
        avro_type = branches[0]
    base, logical = (avro_type["type"], avro_type.get("logicalType")) if isinstance(avro_type, dict) \
        else (avro_type, None)
    if logical == "date":
        return pa.array([None if v is None else (v - EPOCH_DAY).days for v in values], pa.int32())
    if logical in TIMESTAMP_UNITS:
        unit = TIMESTAMP_UNITS[logical]
        return pa.array([None if v is None else (v - EPOCH) // unit for v in values], pa.int64())
    if logical is None and base in PARQUET_TYPES:
        return pa.array(values, PARQUET_TYPES[base])
    # A record, map or array arrives in an Avro COPY as an OBJECT or ARRAY, which JSON text would not stand
    # for; the generator writes none, so none is mirrored.
    raise ValueError(f"field {name!r}: the mirror has no stand-in for Avro type {avro_type!r}")


def create_mirror_stage(server: Any, database: str, mirror: Path) -> str:
    """A stage over the mirror in `database`, as an admin would create one over the bucket; its qualified name."""
    import snowflake.connector

    with closing(snowflake.connector.connect(**server.connect_args(), database=database)) as connection:
        cursor = connection.cursor()
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(STAGE_SCHEMA)}")
        cursor.execute(f"CREATE STAGE {identifier(database)}.{identifier(STAGE_SCHEMA)}.{identifier(STAGE_NAME)} "
                       f"URL={string_literal(f'file://{mirror}/')}")
    return f"{database}.{STAGE_SCHEMA}.{STAGE_NAME}"
