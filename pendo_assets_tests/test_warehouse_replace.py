"""The warehouse seam's contract: `replace()` swaps table-days atomically, runs the shared checks inside its
transaction, and writes the bookkeeping with the rows. Every backend passes the same tests: DuckDB on a file,
Snowflake on the fakesnow server the test setup runs."""

from contextlib import contextmanager
from datetime import date

import pyarrow as pa
import pytest

from pendo_assets.pendo.avro import Column, ColumnType
from pendo_assets.warehouse.base import Replacement, SliceRows
from pendo_assets.warehouse.checks import CheckFailed
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.load import replace
from pendo_assets.warehouse.snowflake import SnowflakeWarehouse

SCHEMA, TABLE, MARK = "SUB_1_APP_2", "ALLEVENTS", "BOOKKEEPING"
DAY, NEXT_DAY = date(2024, 4, 7), date(2024, 4, 8)
COLUMNS = (Column("periodId", ColumnType.DATE, pa.date32()), Column("eventId", ColumnType.TEXT, pa.large_string()))
ARROW_SCHEMA = pa.schema([pa.field(c.name, c.arrow_type) for c in COLUMNS])


def rows(day, *ids):
    return pa.RecordBatch.from_pydict({"periodId": pa.array([day] * len(ids), pa.date32()),
                                       "eventId": pa.array(ids, pa.large_string())}, schema=ARROW_SCHEMA)


class FilesInMemory:
    """Decoded files by path; a path mapped to an exception fails mid-stream, as a truncated file does."""

    def __init__(self, files):
        self.files = files

    @contextmanager
    def batches(self, replacement, slice_rows, path):
        def stream():
            for item in self.files[path]:
                if isinstance(item, Exception):
                    raise item
                yield item
        yield ARROW_SCHEMA, stream()


@pytest.fixture(params=["duckdb", "snowflake"])
def warehouse(request, tmp_path, monkeypatch):
    if request.param == "duckdb":
        target = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        server = request.getfixturevalue("snowflake_server")
        server.use_in(monkeypatch)
        target = SnowflakeWarehouse(server.target(request.getfixturevalue("snowflake_database")))
    with target.session() as s:
        s.ensure_table(SCHEMA, TABLE, COLUMNS, "setup")
        s.ensure_table(SCHEMA, MARK, [Column("loaded", ColumnType.INT64, pa.int64())], "setup")
        s.insert(SCHEMA, TABLE, pa.Table.from_batches([rows(DAY, "old-1", "old-2"), rows(NEXT_DAY, "other")]))
    return target


def day_ids(warehouse, day):
    with warehouse.session() as s:
        return sorted(r[0] for r in s.query(
            f"SELECT {s.quote('eventId')} FROM {s.quote(SCHEMA)}.{s.quote(TABLE)} WHERE {s.quote('periodId')} = ?",
            [day]))


def marks(warehouse):
    with warehouse.session() as s:
        return [r[0] for r in s.query(f"SELECT * FROM {s.quote(SCHEMA)}.{s.quote(MARK)}")]


def replacement(*slices, unique=("eventId",)):
    return Replacement(SCHEMA, TABLE, DAY, tuple(slices), COLUMNS, unique)


def test_a_day_is_replaced_and_the_bookkeeping_sees_what_was_loaded(warehouse):
    files = FilesInMemory({"a1.avro": [rows(DAY, "a"), rows(DAY, "b")], "a2.avro": [rows(DAY, "c")]})
    seen = []

    def bookkeeping(session, replaced):
        seen.append([(done.rows_per_slice, done.files) for done in replaced])
        session.insert(SCHEMA, MARK, pa.table({"loaded": [replaced[0].rows]}))

    with warehouse.session() as s:
        slices = SliceRows("slice 1", ("a1.avro",), 2), SliceRows("slice 2", ("a2.avro",), 1)
        replaced = replace(s, [replacement(*slices)], files, bookkeeping)
    assert [(done.rows, done.files) for done in replaced] == [(3, 2)]
    assert seen == [[([2, 1], 2)]]
    assert day_ids(warehouse, DAY) == ["a", "b", "c"]
    assert day_ids(warehouse, NEXT_DAY) == ["other"]
    assert marks(warehouse) == [3]


@pytest.mark.parametrize("files, slices, message", [
    ({"f.avro": [rows(DAY, "a")]}, [SliceRows("export 3 slice", ("f.avro",), 2)],
     "export 3 slice: the bill of materials says eventCount=2 but the files hold 1 rows \\(f.avro\\)"),
    ({"f.avro": [rows(DAY, "a"), rows(NEXT_DAY, "b")]}, [SliceRows("export 3 slice", ("f.avro",), 2)],
     "ALLEVENTS day 2024-04-07: 1 of the 2 loaded row\\(s\\) carry a periodId other than 2024-04-07"),
    ({"f.avro": [rows(DAY, "a", "a")]}, [SliceRows("export 3 slice", ("f.avro",), 2)],
     "the same eventId appears more than once \\(e.g. a x2\\)"),
])
def test_a_failed_check_rolls_back_the_day_and_its_bookkeeping(warehouse, files, slices, message):
    def bookkeeping(session, replaced):
        raise AssertionError("the checks run before the bookkeeping")

    with pytest.raises(CheckFailed, match=message):
        with warehouse.session() as s:
            replace(s, [replacement(*slices)], FilesInMemory(files), bookkeeping)
    assert day_ids(warehouse, DAY) == ["old-1", "old-2"]
    assert day_ids(warehouse, NEXT_DAY) == ["other"]


def test_bookkeeping_that_fails_takes_the_rows_and_itself_back(warehouse):
    def bookkeeping(session, replaced):
        session.insert(SCHEMA, MARK, pa.table({"loaded": [replaced[0].rows]}))
        raise RuntimeError("the ledger could not be written")

    with pytest.raises(RuntimeError, match="ledger"):
        with warehouse.session() as s:
            replace(s, [replacement(SliceRows("s", ("f.avro",), 1))], FilesInMemory({"f.avro": [rows(DAY, "a")]}),
                      bookkeeping)
    assert day_ids(warehouse, DAY) == ["old-1", "old-2"]
    assert marks(warehouse) == []


def test_a_file_failing_mid_stream_rolls_back_every_replacement(warehouse):
    files = FilesInMemory({"good.avro": [rows(DAY, "a")], "bad.avro": [rows(NEXT_DAY, "x"), OSError("cut short")]})
    second = Replacement(SCHEMA, TABLE, NEXT_DAY, (SliceRows("s", ("bad.avro",), 1),), COLUMNS)
    with pytest.raises(Exception):
        with warehouse.session() as s:
            replace(s, [replacement(SliceRows("s", ("good.avro",), 1)), second], files, lambda *_: None)
    assert day_ids(warehouse, DAY) == ["old-1", "old-2"]
    assert day_ids(warehouse, NEXT_DAY) == ["other"]


def test_a_slice_of_decoded_rows_replaces_a_whole_table(warehouse):
    whole = Replacement(SCHEMA, TABLE, None, (SliceRows("definitions", rows=pa.Table.from_batches([rows(DAY, "d")])),),
                        COLUMNS, ("eventId",))
    with warehouse.session() as s:
        [done] = replace(s, [whole], FilesInMemory({}), lambda *_: None)
    assert done.rows == 1
    assert day_ids(warehouse, DAY) == ["d"] and day_ids(warehouse, NEXT_DAY) == []
