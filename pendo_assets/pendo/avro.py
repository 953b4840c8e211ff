"""Stream an Avro object container file as Arrow record batches, typed from its writer schema.

Columns are never hard-coded: every file's embedded writer schema decides them. Logical types
`date` and `timestamp-millis/micros` become DATE and TIMESTAMP; nested values (records, arrays,
maps, multi-type unions) are kept whole as JSON text, which every warehouse can query.
`periodId` is always a DATE, whichever of Pendo's encodings a file uses.

Decoding is done by polars-avro (native code, about 7x faster than fastavro) whenever it can read
the schema; fastavro reads the rest (multi-type unions, bytes, fixed, decimals). Both produce the
same Arrow batches, which a test holds them to.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any, BinaryIO, Callable, Iterator

import fastavro
import pyarrow as pa

from pendo_assets.pendo.native_decoder import NativeDecoder, NativeDecoderFailed

PERIOD_COLUMN = "periodId"
# Large batches let DuckDB insert efficiently; two in flight stay well under 200 MB for Pendo's rows.
DEFAULT_BATCH_ROWS = 200_000
# Compressed bytes of whole blocks handed to polars-avro at a time: big enough to amortise its set-up,
# small enough that memory does not grow with the file.
NATIVE_CHUNK_BYTES = 8_000_000

_EPOCH = date(1970, 1, 1)


class ColumnType(str, Enum):
    """The warehouse-neutral type of a column, derived from its Avro type; each warehouse maps it to its own."""

    TEXT = "TEXT"
    BOOLEAN = "BOOLEAN"
    INT32 = "INT32"
    INT64 = "INT64"
    FLOAT32 = "FLOAT32"
    FLOAT64 = "FLOAT64"
    BYTES = "BYTES"
    DATE = "DATE"
    TIMESTAMP = "TIMESTAMP"  # UTC, without a zone
    JSON = "JSON"  # records, arrays, maps and multi-type unions, kept whole


# A value stored in a column of the second type keeps its meaning; anything else is a conflict.
WIDENINGS = frozenset({(ColumnType.INT32, ColumnType.INT64), (ColumnType.FLOAT32, ColumnType.FLOAT64),
                       (ColumnType.INT32, ColumnType.FLOAT64), (ColumnType.TEXT, ColumnType.JSON),
                       (ColumnType.JSON, ColumnType.TEXT)})


def column_fits(file_type: ColumnType, table_type: ColumnType) -> bool:
    return file_type == table_type or (file_type, table_type) in WIDENINGS


_PRIMITIVES: dict[str, tuple[ColumnType, pa.DataType]] = {
    "null": (ColumnType.TEXT, pa.large_string()),
    "boolean": (ColumnType.BOOLEAN, pa.bool_()),
    "int": (ColumnType.INT32, pa.int32()),
    "long": (ColumnType.INT64, pa.int64()),
    "float": (ColumnType.FLOAT32, pa.float32()),
    "double": (ColumnType.FLOAT64, pa.float64()),
    "string": (ColumnType.TEXT, pa.large_string()),
    "bytes": (ColumnType.BYTES, pa.binary()),
    "fixed": (ColumnType.BYTES, pa.binary()),
    "enum": (ColumnType.TEXT, pa.large_string()),
}
_LOGICAL: dict[tuple[str, str], tuple[ColumnType, pa.DataType]] = {
    ("int", "date"): (ColumnType.DATE, pa.date32()),
    ("long", "timestamp-millis"): (ColumnType.TIMESTAMP, pa.timestamp("ms")),
    ("long", "timestamp-micros"): (ColumnType.TIMESTAMP, pa.timestamp("us")),
}
_NESTED = ("record", "array", "map")


class AvroReadError(Exception):
    """A file that is missing, empty, truncated or corrupt; the message names the file."""


@dataclass(frozen=True)
class Column:
    """A warehouse column: its Avro field name, neutral type, Arrow type as decoded, and the field's Avro type
    (without its null branch), which a warehouse reading the file itself needs to convert the value."""

    name: str
    type: ColumnType
    arrow_type: pa.DataType
    avro_type: Any = "string"


@dataclass(frozen=True)
class _Field:
    column: Column
    convert: Callable[[list[Any]], list[Any]] | None


def read_batches(fo: BinaryIO, source: str, batch_rows: int = DEFAULT_BATCH_ROWS, decoder: str = "auto",
                 after: threading.Event | None = None) -> tuple[list[Column], "BatchStream | InlineBatches"]:
    """Open `fo` (seekable) and return its columns plus its record batches.

    Native decoding starts at once on a thread (once `after` is set, if given: the previous file's
    decoding), so a caller can open the next file while it still writes this one. Only a bounded
    number of decoded rows is held at a time, whatever the file's size.
    `decoder="fastavro"` forces the pure-Python decoder (tests compare the two).
    """
    container = read_container(fo, source)
    writer_schema = _writer_schema(container, source)
    fields = _fields(writer_schema, source)
    schema = pa.schema([pa.field(f.column.name, f.column.arrow_type) for f in fields])
    if decoder == "auto" and _polars_reads(writer_schema):
        return [f.column for f in fields], BatchStream(
            _native_batches(container, writer_schema, fields, schema, source, batch_rows), after=after)
    fo.seek(0)
    try:
        reader = fastavro.reader(fo)
    except Exception as exc:
        raise AvroReadError(f"{source}: not a readable Avro file ({_describe(exc)})") from None
    return [f.column for f in fields], InlineBatches(_fastavro_batches(reader, fields, schema, source, batch_rows))


def _native_batches(container: "Container", writer_schema: dict[str, Any], fields: list[_Field], schema: pa.Schema,
                    source: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Decode with polars-avro in the decoder process, a few MB of whole blocks at a time.

    Handed a whole file, polars-avro holds all of it decoded at once, and it stops quietly at the last
    whole block of a truncated file. Fed the header plus a bounded run of blocks from our own walk of
    the container (which checks every sync marker), memory stays flat and every block's rows are
    accounted for.
    """
    avro_types = {f["name"]: f["type"] for f in writer_schema["fields"]}

    def chunks() -> Iterator[tuple[bytes, int]]:
        chunk: list[bytes] = []
        size = rows = 0
        for count, data in container.blocks:
            chunk.append(_long_bytes(count) + _long_bytes(len(data)) + data + container.sync)
            size, rows = size + len(data), rows + count
            if size >= NATIVE_CHUNK_BYTES:
                yield container.header + b"".join(chunk), rows
                chunk, size, rows = [], 0, 0
        if chunk:
            yield container.header + b"".join(chunk), rows

    position = 0
    for chunk, rows in chunks():
        decoded = 0
        try:
            for decoded_batch in _native_decoder().decode(chunk):
                for batch in pa.table(decoded_batch).to_batches(max_chunksize=batch_rows):
                    yield _conform(pa.table(batch), fields, avro_types, schema, source, position + decoded)
                    decoded += batch.num_rows
        except NativeDecoderFailed as exc:
            raise AvroReadError(f"{source}: unreadable after row {position} ({exc}); "
                                "the file is truncated or corrupt") from None
        if decoded != rows:
            raise AvroReadError(f"{source}: decoded {decoded} rows where its blocks hold {rows} "
                                f"(after row {position}); the file is corrupt")
        position += rows


_DECODER: NativeDecoder | None = None


def _native_decoder() -> NativeDecoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = NativeDecoder(batch_rows=65_536)
    return _DECODER


def start_decoder() -> None:
    """Start the decoder process ahead of the first file (it takes about half a second to import)."""
    _native_decoder().start()


class BatchStream:
    """A file's record batches, produced on a thread at most `depth` ahead of the consumer.

    `decoded` is set once the producer is done (or failed, or was closed); errors reach the consumer.
    """

    _END = object()

    def __init__(self, batches: Iterator[pa.RecordBatch], depth: int = 2, after: threading.Event | None = None):
        self.decoded = threading.Event()
        self._ready: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        threading.Thread(target=self._produce, args=(batches, after), name="avro-read-ahead", daemon=True).start()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                batch, error = self._ready.get()
                if error is not None:
                    raise error
                if batch is self._END:
                    return
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()

    def _produce(self, batches: Iterator[pa.RecordBatch], after: threading.Event | None) -> None:
        try:
            while after is not None and not after.wait(0.1):
                if self._stop.is_set():
                    return
            for batch in batches:
                if not self._put((batch, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:
            self._put((self._END, exc))
        finally:
            # Closed early, the generator would hold the decoder (mid-chunk) until garbage-collected.
            getattr(batches, "close", lambda: None)()
            self.decoded.set()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class InlineBatches:
    """Batches decoded by the consumer itself as it asks for them (the pure-Python decoder)."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        self.decoded = threading.Event()
        self.decoded.set()
        self._batches = batches

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return iter(self._batches)

    def close(self) -> None:
        getattr(self._batches, "close", lambda: None)()


def read_columns(fo: BinaryIO, source: str) -> list[Column]:
    """The columns of `fo` from its header alone, without reading any rows."""
    return [f.column for f in _fields(_writer_schema(read_container(fo, source), source), source)]


def _writer_schema(container: "Container", source: str) -> Any:
    try:
        return json.loads(container.metadata["avro.schema"])
    except (KeyError, ValueError):
        raise AvroReadError(f"{source}: the header has no readable writer schema") from None


@dataclass
class Container:
    """An Avro object container file: header metadata, the raw header, its sync marker, and its blocks."""

    metadata: dict[str, bytes]
    header: bytes
    sync: bytes
    blocks: Iterator[tuple[int, bytes]]


def read_container(fo: BinaryIO, source: str) -> Container:
    """Parse the header; the blocks are read lazily, each checked against the sync marker.

    A block cut short or a wrong sync marker raises AvroReadError (a truncated or corrupt file).
    """
    fo.seek(0)
    if fo.read(4) != b"Obj\x01":
        raise AvroReadError(f"{source}: not an Avro container file (empty, or another format)")
    try:
        metadata = {}
        while (pairs := _read_long(fo)) != 0:
            if pairs < 0:
                _read_long(fo)
            for _ in range(abs(pairs)):
                key = fo.read(_read_long(fo)).decode()
                metadata[key] = fo.read(_read_long(fo))
        sync = fo.read(16)
        if len(sync) != 16:
            raise EOFError("unexpected end of file")
    except (EOFError, UnicodeDecodeError) as exc:
        raise AvroReadError(f"{source}: {exc} in the header; not a readable Avro file") from None
    header_size = fo.tell()
    fo.seek(0)
    header = fo.read(header_size)
    return Container(metadata, header, sync, _blocks(fo, sync, source))


def _blocks(fo: BinaryIO, sync: bytes, source: str) -> Iterator[tuple[int, bytes]]:
    try:
        while head := fo.read(1):
            count = _read_long(fo, head)
            size = _read_long(fo)
            data = fo.read(size) if size >= 0 else b""
            if count < 0 or size < 0 or len(data) != size or fo.read(16) != sync:
                raise EOFError("block cut short or sync marker wrong")
            yield count, data
    except EOFError as exc:
        raise AvroReadError(f"{source}: {exc} after the last whole block; the file is truncated or corrupt") \
            from None


def _long_bytes(value: int) -> bytes:
    """Avro's zig-zag varint encoding of `value`."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_long(fo: BinaryIO, first: bytes = b"") -> int:
    """Avro's zig-zag varint."""
    shift, accumulated = 0, 0
    byte = first or fo.read(1)
    while True:
        if not byte:
            raise EOFError("unexpected end of file")
        value = byte[0]
        accumulated |= (value & 0x7F) << shift
        if not value & 0x80:
            return (accumulated >> 1) ^ -(accumulated & 1)
        shift += 7
        byte = fo.read(1)


def _conform(table: pa.Table, fields: list[_Field], avro_types: dict[str, Any], schema: pa.Schema, source: str,
             position: int) -> pa.RecordBatch:
    """Give a polars-avro batch exactly the types and values the fastavro path produces."""
    arrays = []
    for f in fields:
        column = table.column(f.column.name).combine_chunks()
        if f.column.type is ColumnType.JSON:
            values = [_plain(v, avro_types[f.column.name]) for v in column.to_pylist()]
            arrays.append(pa.array(_to_json(values), pa.large_string()))
        elif f.convert is not None and not (f.column.name == PERIOD_COLUMN and pa.types.is_date32(column.type)):
            try:
                arrays.append(pa.array(f.convert(column.to_pylist()), f.column.arrow_type))
            except ValueError as exc:
                raise AvroReadError(f"{source}: field {f.column.name!r} near row {position}: {exc}") from None
        else:
            arrays.append(column.cast(f.column.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _plain(value: Any, avro_type: Any) -> Any:
    """Nested values as fastavro gives them: polars-avro returns maps as lists of (key, value) pairs."""
    if value is None:
        return None
    avro_type = _non_null(avro_type)
    kind = _type_name(avro_type)
    if kind == "map":
        return {k: _plain(v, avro_type["values"]) for k, v in value}
    if kind == "array":
        return [_plain(v, avro_type["items"]) for v in value]
    if kind == "record":
        types = {f["name"]: f["type"] for f in avro_type["fields"]}
        return {k: _plain(v, types[k]) for k, v in value.items()}
    return value


def _polars_reads(schema: Any) -> bool:
    """Whether polars-avro decodes this schema faithfully (it has no multi-type unions, nor bytes/fixed/decimal)."""
    if isinstance(schema, list):
        branches = [t for t in schema if t != "null"]
        return len(branches) <= 1 and all(_polars_reads(t) for t in branches)
    if isinstance(schema, str):
        return schema not in ("bytes", "fixed")
    if schema.get("logicalType") == "decimal":
        return False
    kind = schema["type"]
    if kind == "record":
        return all(_polars_reads(f["type"]) for f in schema["fields"])
    if kind == "array":
        return _polars_reads(schema["items"])
    if kind == "map":
        return _polars_reads(schema["values"])
    return _polars_reads(kind) if isinstance(kind, (str, list, dict)) else False


def _fastavro_batches(reader: Any, fields: list[_Field], schema: pa.Schema, source: str,
             batch_rows: int) -> Iterator[pa.RecordBatch]:
    rows: list[dict[str, Any]] = []
    position = 0
    try:
        for record in reader:
            rows.append(record)
            if len(rows) >= batch_rows:
                yield _to_batch(rows, fields, schema, source, position)
                position += len(rows)
                rows = []
    except AvroReadError:
        raise
    except Exception as exc:
        raise AvroReadError(
            f"{source}: unreadable after row {position + len(rows)} ({_describe(exc)}); "
            "the file is truncated or corrupt") from None
    if rows:
        yield _to_batch(rows, fields, schema, source, position)


def _to_batch(rows: list[dict[str, Any]], fields: list[_Field], schema: pa.Schema, source: str,
              position: int) -> pa.RecordBatch:
    arrays = []
    for f in fields:
        values = [r.get(f.column.name) for r in rows]
        if f.convert:
            try:
                values = f.convert(values)
            except ValueError as exc:
                raise AvroReadError(f"{source}: field {f.column.name!r} near row {position}: {exc}") from None
        arrays.append(pa.array(values, type=_storage_type(f.column.arrow_type)).cast(f.column.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _storage_type(arrow_type: pa.DataType) -> pa.DataType:
    """fastavro yields UTC-aware datetimes; Arrow takes them as such, then drops the zone (TIMESTAMP is UTC)."""
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        return pa.timestamp(arrow_type.unit, tz="UTC")
    return arrow_type


def _fields(schema: dict[str, Any], source: str) -> list[_Field]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise AvroReadError(f"{source}: the writer schema is not a record, so it has no columns")
    seen: set[str] = set()
    fields = []
    for field in schema["fields"]:
        name = field["name"]
        if name.lower() in seen:
            raise AvroReadError(f"{source}: field {name!r} appears twice (names are case-insensitive)")
        seen.add(name.lower())
        fields.append(_period_field(field["type"]) if name == PERIOD_COLUMN else _field_for(name, field["type"]))
    return fields


def _field_for(name: str, avro_type: Any) -> _Field:
    avro_type = _non_null(avro_type)
    if isinstance(avro_type, list) or _type_name(avro_type) in _NESTED:
        return _Field(Column(name, ColumnType.JSON, pa.large_string(), avro_type), _to_json)
    base = _type_name(avro_type)
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    if (base, logical) in _LOGICAL:
        column_type, arrow_type = _LOGICAL[(base, logical)]
        return _Field(Column(name, column_type, arrow_type, avro_type), None)
    if logical == "decimal":
        return _Field(Column(name, ColumnType.FLOAT64, pa.float64(), avro_type), _to_float)
    column_type, arrow_type = _PRIMITIVES.get(base, (ColumnType.JSON, pa.large_string()))
    return _Field(Column(name, column_type, arrow_type, avro_type),
                  _to_json if column_type is ColumnType.JSON else None)


def _non_null(avro_type: Any) -> Any:
    """`["null", T]` is a nullable T; any other union stays a list."""
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return rest[0] if len(rest) == 1 else (rest or "null")
    return avro_type


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return avro_type["type"] if isinstance(avro_type["type"], str) else "record"
    return avro_type if isinstance(avro_type, str) else "union"


def _to_json(values: list[Any]) -> list[Any]:
    return [None if v is None else json.dumps(v, ensure_ascii=False, default=str, sort_keys=True) for v in values]


def _to_float(values: list[Any]) -> list[Any]:
    return [None if v is None else float(v) for v in values]


def _period_dates(values: list[Any]) -> list[Any]:
    """Dates from any of Pendo's periodId encodings: date, days since epoch, yyyymmdd, or ISO text."""
    dates = []
    for v in values:
        if v is None or isinstance(v, date):
            dates.append(v)
        elif isinstance(v, int) and v < 10_000_000:
            dates.append(date.fromordinal(_EPOCH.toordinal() + v))
        elif isinstance(v, int):
            dates.append(date(v // 10000, v // 100 % 100, v % 100))
        elif isinstance(v, str):
            dates.append(date.fromisoformat(v.split("T", 1)[0]))
        else:
            raise ValueError(f"periodId {v!r} is not a date")
    return dates


def _period_field(avro_type: Any) -> _Field:
    return _Field(Column(PERIOD_COLUMN, ColumnType.DATE, pa.date32(), _non_null(avro_type)), _period_dates)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
