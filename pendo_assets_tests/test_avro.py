import io
import threading
from datetime import date, datetime, timezone

import fastavro
import pyarrow as pa
import pytest

from pendo_assets.pendo import avro
from pendo_assets.pendo.avro import AvroReadError, _polars_reads, read_batches
from pendo_assets.pendo.native_decoder import NativeDecoder
from pendo_assets_tests.e2e import generate_small

TS = {"type": "long", "logicalType": "timestamp-millis"}
SCHEMA = {
    "type": "record", "name": "Event", "namespace": "test",
    "fields": [
        {"name": "periodId", "type": {"type": "int", "logicalType": "date"}},
        {"name": "browserTimestamp", "type": TS},
        {"name": "micros", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": None},
        {"name": "eventId", "type": "string"},
        {"name": "accountId", "type": ["null", "string"], "default": None},
        {"name": "latitude", "type": ["null", "double"], "default": None},
        {"name": "count", "type": "int"},
        {"name": "flag", "type": "boolean"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "properties", "type": ["null", {"type": "map", "values": "string"}], "default": None},
        {"name": "location", "type": ["null", {"type": "record", "name": "Loc",
                                                "fields": [{"name": "city", "type": "string"}]}], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "either", "type": ["null", "string", "long"], "default": None},
    ],
}


def record(i):
    return {
        "periodId": date(2024, 4, 7), "browserTimestamp": datetime(2024, 4, 7, 23, 59, 59, 999000, timezone.utc),
        "micros": datetime(2024, 4, 7, 0, 0, 0, 1, timezone.utc) if i % 2 else None,
        "eventId": f"e{i}", "accountId": None if i % 3 == 0 else f"acc-ü-{i}", "latitude": 1.5 if i % 2 else None,
        "count": i, "flag": i % 2 == 0, "kind": "B", "properties": {"k": "日本"} if i % 2 else None,
        "location": {"city": "Zürich"} if i % 4 == 0 else None, "tags": ["x", str(i)],
        "either": i if i % 5 == 0 else None,
    }


def avro_bytes(records, codec="deflate", schema=SCHEMA, sync_interval=16000):
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, records, codec=codec, sync_interval=sync_interval)
    return buffer.getvalue()


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_rows_and_types_match_fastavro(codec):
    raw = avro_bytes([record(i) for i in range(250)], codec=codec, sync_interval=500)
    columns, batches = read_batches(io.BytesIO(raw), "mem.avro", batch_rows=64)
    types = {c.name: c.type.value for c in columns}
    assert types == {"periodId": "DATE", "browserTimestamp": "TIMESTAMP", "micros": "TIMESTAMP", "eventId": "TEXT",
                     "accountId": "TEXT", "latitude": "FLOAT64", "count": "INT32", "flag": "BOOLEAN",
                     "kind": "TEXT", "properties": "JSON", "location": "JSON", "tags": "JSON", "either": "JSON"}
    batches = list(batches)
    assert [b.num_rows for b in batches] == [64, 64, 64, 58]
    rows = [row for b in batches for row in b.to_pylist()]
    expected = list(fastavro.reader(io.BytesIO(raw)))
    assert len(rows) == len(expected) == 250
    for got, want in zip(rows, expected):
        assert got["periodId"] == want["periodId"]
        assert got["browserTimestamp"] == want["browserTimestamp"].replace(tzinfo=None)
        assert got["micros"] == (want["micros"].replace(tzinfo=None) if want["micros"] else None)
        for name in ("eventId", "accountId", "latitude", "count", "flag", "kind"):
            assert got[name] == want[name]
    assert rows[1]["properties"] == '{"k": "日本"}'
    assert rows[0]["location"] == '{"city": "Zürich"}' and rows[1]["location"] is None
    assert rows[5]["either"] == "5" and rows[0]["tags"] == '["x", "0"]'


@pytest.mark.parametrize("encoding, values", [
    ("int", [19820, 19821]),
    ("yyyymmdd", [20240407, 20240408]),
    ("string", ["2024-04-07", "2024-04-08T00:00:00Z"]),
])
def test_every_period_id_encoding_becomes_a_date(encoding, values):
    avro_type = {"int": "int", "yyyymmdd": "int", "string": "string"}[encoding]
    schema = {"type": "record", "name": "R", "fields": [{"name": "periodId", "type": avro_type}]}
    columns, batches = read_batches(io.BytesIO(avro_bytes([{"periodId": v} for v in values], schema=schema)), "f")
    assert columns[0].type.value == "DATE" and columns[0].avro_type == avro_type
    days = [r["periodId"] for b in batches for r in b.to_pylist()]
    assert days == ([date(2024, 4, 7), date(2024, 4, 8)] if encoding != "int" else
                    [date(2024, 4, 7), date(2024, 4, 8)])


def test_zero_row_file_has_columns_and_no_batches():
    columns, batches = read_batches(io.BytesIO(avro_bytes([])), "empty-rows.avro")
    assert len(columns) == len(SCHEMA["fields"]) and list(batches) == []


def test_empty_file_is_refused_naming_it():
    with pytest.raises(AvroReadError, match="zero.avro: not an Avro container file"):
        read_batches(io.BytesIO(b""), "zero.avro")


def test_truncated_file_is_refused_naming_it():
    raw = avro_bytes([record(i) for i in range(2000)], sync_interval=2000)
    _, batches = read_batches(io.BytesIO(raw[: len(raw) * 2 // 3]), "cut.avro", batch_rows=100)
    with pytest.raises(AvroReadError, match="cut.avro: unreadable after row .* truncated or corrupt"):
        list(batches)


def test_corrupt_block_is_refused_naming_it():
    raw = bytearray(avro_bytes([record(i) for i in range(2000)], sync_interval=2000))
    middle = len(raw) // 2
    raw[middle:middle + 64] = b"\xff" * 64
    _, batches = read_batches(io.BytesIO(bytes(raw)), "bad.avro", batch_rows=100)
    with pytest.raises(AvroReadError, match="bad.avro"):
        list(batches)


FAST_SCHEMA = dict(SCHEMA, fields=[f for f in SCHEMA["fields"] if f["name"] != "either"])


def fast_record(i):
    return {k: v for k, v in record(i).items() if k != "either"}


def read_all(raw: bytes, decoder: str, batch_rows: int = 100):
    columns, batches = read_batches(io.BytesIO(raw), "f.avro", batch_rows=batch_rows, decoder=decoder)
    return columns, pa.Table.from_batches(list(batches), schema=pa.schema(
        [pa.field(c.name, c.arrow_type) for c in columns]))


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_fast_decoder_yields_exactly_the_rows_and_types_of_fastavro(codec):
    raw = avro_bytes([fast_record(i) for i in range(1000)], codec=codec, schema=FAST_SCHEMA, sync_interval=3000)
    assert _polars_reads(FAST_SCHEMA) and not _polars_reads(SCHEMA)
    fast_columns, fast = read_all(raw, "auto")
    slow_columns, slow = read_all(raw, "fastavro")
    assert fast_columns == slow_columns
    assert fast.schema == slow.schema
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.num_rows == 1000


def test_fast_decoder_matches_fastavro_on_every_generated_file(tmp_path):
    generate_small(tmp_path)
    files = sorted(tmp_path.glob("datasync/**/*.avro"))
    assert len(files) > 50
    for path in files:
        raw = path.read_bytes()
        fast_columns, fast = read_all(raw, "auto", batch_rows=7)
        _, slow = read_all(raw, "fastavro", batch_rows=7)
        assert fast.to_pylist() == slow.to_pylist(), path
        assert fast.schema == slow.schema, path


def test_fast_decoder_refuses_truncated_and_corrupt_files_naming_them():
    raw = avro_bytes([fast_record(i) for i in range(3000)], schema=FAST_SCHEMA, sync_interval=2000)
    with pytest.raises(AvroReadError, match="f.avro: .*truncated or corrupt"):
        read_all(raw[: len(raw) * 2 // 3], "auto")
    corrupt = bytearray(raw)
    corrupt[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64
    with pytest.raises(AvroReadError, match="f.avro"):
        read_all(bytes(corrupt), "auto")


def test_fast_decoder_streams_a_file_cut_into_many_chunks(monkeypatch):
    raw = avro_bytes([fast_record(i) for i in range(3000)], schema=FAST_SCHEMA, sync_interval=500)
    monkeypatch.setattr(avro, "NATIVE_CHUNK_BYTES", 1000)
    chunked_columns, chunked = read_all(raw, "auto", batch_rows=64)
    _, slow = read_all(raw, "fastavro")
    assert chunked.to_pylist() == slow.to_pylist()
    assert chunked.num_rows == 3000


def test_decoder_child_answers_a_chunk_batch_by_batch_and_survives_an_abandoned_answer():
    raw = avro_bytes([fast_record(i) for i in range(1000)], schema=FAST_SCHEMA)
    decoder = NativeDecoder(batch_rows=100)
    try:
        batches = list(decoder.decode(raw))
        assert [b.num_rows for b in batches] == [100] * 10
        assert [r["eventId"] for b in batches for r in b.to_pylist()] == [f"e{i}" for i in range(1000)]
        assert not any(pa.types.is_dictionary(f.type) for f in batches[0].schema)  # the enum arrives as values

        abandoned = decoder.decode(raw)
        next(abandoned)
        abandoned.close()
        assert sum(b.num_rows for b in decoder.decode(raw)) == 1000
    finally:
        decoder._stop()


def test_a_file_opened_after_another_starts_decoding_only_when_that_one_is_decoded():
    raw = avro_bytes([fast_record(i) for i in range(1000)], schema=FAST_SCHEMA)
    previous_decoded = threading.Event()
    _, stream = read_batches(io.BytesIO(raw), "next.avro", after=previous_decoded)
    assert not stream.decoded.wait(0.5)
    previous_decoded.set()
    assert sum(b.num_rows for b in stream) == 1000
    assert stream.decoded.is_set()
