"""The Snowflake load SQL: golden text, sqlglot's reading of it, chunking, quoting and the rule checker, offline;
then both COPY forms run against a fakesnow server (it has no Avro COPY, so Parquet files stand in)."""

from __future__ import annotations

import io
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector
import sqlglot
from sqlglot import exp

from pendo_assets.pendo.avro import Column, ColumnType, read_batches
from pendo_assets.warehouse.snowflake import staged_rows
from pendo_assets.warehouse.snowflake_sql import (SNOWFLAKE_TYPES, StagedFile, StagePath, add_column, check_statements,
                                                  copy_from_stage, copy_staged, create_schema, create_table,
                                                  create_temporary_stage, identifier, neutral_type, put_file,
                                                  staged_parquet_schema, string_literal)
from pendo_assets_tests.snowflake_server import unique_database_name

DATE = {"type": "int", "logicalType": "date"}
MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
MICROS = {"type": "long", "logicalType": "timestamp-micros"}
EXPORTS_STAGE = "pendo_db.raw.pendo_exports"
FEATURE_ID = "Xk3aB9_pQz-17"
SLICE_FOLDER = f"datasync/5e1c/-323232/export41/matchedEvents/feature/{FEATURE_ID}"


def columns_of(*fields: tuple[str, Any]) -> list[Column]:
    """The columns avro.py reads from the header of a file whose writer schema has these (name, type) fields."""
    schema = {"type": "record", "name": "Event", "fields": [{"name": n, "type": t} for n, t in fields]}
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [])
    columns, batches = read_batches(buffer, "header.avro", decoder="fastavro")
    batches.close()
    return columns


EVENT_COLUMNS = columns_of(
    ("periodId", DATE), ("browserTimestamp", MILLIS), ("eventId", "string"), ("visitorId", "string"),
    ("accountId", ["null", "string"]), ("numEvents", "int"), ("latitude", ["null", "double"]),
    ("properties", ["null", {"type": "map", "values": "string"}]))

GOLDEN_COPY = (
    'COPY INTO "PENDO_APP_1"."MATCHEDFEATUREEVENTS" ("PERIODID", "BROWSERTIMESTAMP", "EVENTID", "VISITORID", '
    '"ACCOUNTID", "NUMEVENTS", "LATITUDE", "PROPERTIES", "MATCHABLEID") '
    "FROM (SELECT DATEADD(day, $1:\"periodId\"::INT, '1970-01-01'::DATE), "
    'TO_TIMESTAMP_NTZ($1:"browserTimestamp"::NUMBER, 3), $1:"eventId"::VARCHAR, $1:"visitorId"::VARCHAR, '
    '$1:"accountId"::VARCHAR, $1:"numEvents"::NUMBER(38,0), $1:"latitude"::FLOAT, $1:"properties", '
    "'Xk3aB9_pQz-17' "
    'FROM @"PENDO_DB"."RAW"."PENDO_EXPORTS") '
    "FILES = ('datasync/5e1c/-323232/export41/matchedEvents/feature/Xk3aB9_pQz-17/part-0.avro', "
    "'datasync/5e1c/-323232/export41/matchedEvents/feature/Xk3aB9_pQz-17/part-1.avro') "
    "FILE_FORMAT = (TYPE = AVRO) FORCE = TRUE ON_ERROR = ABORT_STATEMENT"
)
GOLDEN_CREATE_TABLE = (
    'CREATE TABLE IF NOT EXISTS "PENDO_APP_1"."MATCHEDFEATUREEVENTS" ("PERIODID" DATE, '
    '"BROWSERTIMESTAMP" TIMESTAMP_NTZ, "EVENTID" VARCHAR, "VISITORID" VARCHAR, "ACCOUNTID" VARCHAR, '
    '"NUMEVENTS" NUMBER(38,0), "LATITUDE" FLOAT, "PROPERTIES" VARIANT)'
)
LOAD_FOLDER = StagePath("pendo_load_7f3a", "matchedFeatureEvents/2024-04-14")
GOLDEN_STAGED_COPY = (
    'COPY INTO "PENDO_APP_1"."MATCHEDFEATUREEVENTS" ("PERIODID", "BROWSERTIMESTAMP", "EVENTID", "VISITORID", '
    '"ACCOUNTID", "NUMEVENTS", "LATITUDE", "PROPERTIES") FROM (SELECT DATEADD(day, $1:"c0"::INT, '
    "'1970-01-01'::DATE), TO_TIMESTAMP_NTZ($1:\"c1\"::NUMBER, 6), $1:\"c2\"::VARCHAR, $1:\"c3\"::VARCHAR, "
    '$1:"c4"::VARCHAR, $1:"c5"::NUMBER(38,0), $1:"c6"::FLOAT, PARSE_JSON($1:"c7"::VARCHAR) '
    'FROM @"PENDO_LOAD_7F3A"/matchedFeatureEvents/2024-04-14/) FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE '
    "ON_ERROR = ABORT_STATEMENT"
)


def event_copies(files: list[str], **options: Any) -> list[str]:
    """The COPYs of one matched slice's files, which (like Pendo's, here) lack the matchableId the slice gives."""
    return copy_from_stage("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS, EXPORTS_STAGE,
                           [StagedFile(path, tuple(EVENT_COLUMNS), {"matchableId": FEATURE_ID}) for path in files],
                           **options)


def every_statement() -> list[str]:
    return [create_schema("pendo_app_1"), create_table("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS),
            add_column("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS[-1]),
            *event_copies([f"{SLICE_FOLDER}/part-{n}.avro" for n in range(3)]),
            create_temporary_stage("pendo_load_7f3a"), put_file("/tmp/pendo load/part-0.parquet", LOAD_FOLDER),
            copy_staged("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS, LOAD_FOLDER)]


def files_listed(statement: str) -> list[str]:
    """The FILES = (...) paths of a COPY, as sqlglot reads them (so with its literals unescaped)."""
    copy = sqlglot.parse_one(statement, read="snowflake")
    (files,) = [option.expression for option in copy.args["params"] if option.this.name == "FILES"]
    return [literal.this for literal in (files.expressions if isinstance(files, exp.Tuple) else [files.this])]


# --- Golden text -------------------------------------------------------------------------------------------------

def test_the_transformation_copy_of_a_matched_slice_reads_as_written():
    assert event_copies([f"{SLICE_FOLDER}/part-0.avro", f"{SLICE_FOLDER}/part-1.avro"]) == [GOLDEN_COPY]


def test_the_ddl_reads_as_written():
    assert create_schema("pendo_app_1") == 'CREATE SCHEMA IF NOT EXISTS "PENDO_APP_1"'
    assert create_table("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS) == GOLDEN_CREATE_TABLE
    assert add_column("pendo_app_1", "matchedFeatureEvents", Column("sessionId", ColumnType.TEXT, pa.string())) == (
        'ALTER TABLE "PENDO_APP_1"."MATCHEDFEATUREEVENTS" ADD COLUMN IF NOT EXISTS "SESSIONID" VARCHAR')


def test_the_staged_parquet_statements_read_as_written():
    assert create_temporary_stage("pendo_load_7f3a") == 'CREATE TEMPORARY STAGE "PENDO_LOAD_7F3A"'
    assert put_file("/tmp/pendo load/part-0.parquet", LOAD_FOLDER) == (
        "PUT 'file:///tmp/pendo load/part-0.parquet' @\"PENDO_LOAD_7F3A\"/matchedFeatureEvents/2024-04-14/ "
        "AUTO_COMPRESS=FALSE OVERWRITE=TRUE")
    assert copy_staged("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS, LOAD_FOLDER) == GOLDEN_STAGED_COPY


@pytest.mark.parametrize("avro_type, expected", [
    (DATE, "DATEADD(day, $1:\"periodId\"::INT, '1970-01-01'::DATE)"),
    ("int", "IFF($1:\"periodId\"::INT < 10000000, DATEADD(day, $1:\"periodId\"::INT, '1970-01-01'::DATE), "
            "TO_DATE(TO_VARCHAR($1:\"periodId\"::INT), 'YYYYMMDD'))"),
    ("long", "IFF($1:\"periodId\"::INT < 10000000, DATEADD(day, $1:\"periodId\"::INT, '1970-01-01'::DATE), "
             "TO_DATE(TO_VARCHAR($1:\"periodId\"::INT), 'YYYYMMDD'))"),
    ("string", 'TO_DATE(LEFT($1:"periodId"::VARCHAR, 10))'),
], ids=["logical-date", "int-days-or-yyyymmdd", "long-days-or-yyyymmdd", "iso-text"])
def test_period_id_is_converted_from_each_of_pendos_encodings(avro_type, expected):
    (statement,) = copy_from_stage("s", "t", columns_of(("periodId", avro_type)), "exports", ["a.avro"])
    assert f'("PERIODID") FROM (SELECT {expected} FROM @"EXPORTS")' in statement


@pytest.mark.parametrize("avro_type, expected", [
    (MICROS, 'TO_TIMESTAMP_NTZ($1:"f"::NUMBER, 6)'),
    (DATE, "DATEADD(day, $1:\"f\"::INT, '1970-01-01'::DATE)"),
    ("boolean", '$1:"f"::BOOLEAN'),
    ("long", '$1:"f"::NUMBER(38,0)'),
    ("float", '$1:"f"::FLOAT'),
    ("bytes", '$1:"f"::BINARY'),
    ({"type": "enum", "name": "Kind", "symbols": ["A"]}, '$1:"f"::VARCHAR'),
    ({"type": "array", "items": "string"}, '$1:"f"'),
    (["null", "string", "long"], '$1:"f"'),
], ids=["micros", "date", "boolean", "long", "float", "bytes", "enum", "array", "union"])
def test_every_other_field_type_has_its_conversion(avro_type, expected):
    (statement,) = copy_from_stage("s", "t", columns_of(("f", avro_type)), "exports", ["a.avro"])
    assert f'("F") FROM (SELECT {expected} FROM @"EXPORTS")' in statement


def test_a_fill_column_the_file_has_is_read_from_the_file_as_the_decoded_path_reads_it():
    columns = columns_of(("eventId", "string"), ("matchableId", ["null", "string"]))
    (statement,) = copy_from_stage("s", "t", columns, "exports",
                                   [StagedFile("a.avro", tuple(columns), {"matchableId": "f1"})])
    assert '("EVENTID", "MATCHABLEID") FROM (SELECT $1:"eventId"::VARCHAR, $1:"matchableId"::VARCHAR FROM' \
        in statement


def matched_file(path: str, matchable_id: str, timestamp: Any = MILLIS, has_id: bool = False) -> StagedFile:
    fields = [("periodId", DATE), ("browserTimestamp", timestamp), ("eventId", "string")]
    return StagedFile(path, tuple(columns_of(*fields, *([("matchableId", "string")] if has_id else []))),
                      {"matchableId": matchable_id})


MATCHED_COLUMNS = [*columns_of(("periodId", DATE), ("browserTimestamp", MILLIS), ("eventId", "string")),
                   Column("matchableId", ColumnType.TEXT, pa.large_string())]


def test_files_of_many_matchables_share_one_copy_each_taking_its_own_id_by_its_file_name():
    files = [matched_file(f"export1/matchedEvents/Feature/{n}.avro", f"id-{n}'x") for n in range(3)]
    (statement,) = copy_from_stage("s", "t", MATCHED_COLUMNS, "exports", files)
    assert ("CASE WHEN METADATA$FILENAME = 'export1/matchedEvents/Feature/0.avro' OR ENDSWITH(METADATA$FILENAME, "
            "'/export1/matchedEvents/Feature/0.avro') THEN 'id-0''x' WHEN ") in statement
    assert statement.count(" THEN ") == 3 and files_listed(statement) == [f.path for f in files]
    assert check_statements([statement]) == []


def test_files_that_carry_their_matchable_id_need_no_file_name():
    files = [matched_file(f"m/{n}.avro", f"id-{n}", has_id=True) for n in range(3)]
    (statement,) = copy_from_stage("s", "t", MATCHED_COLUMNS, "exports", files)
    assert "METADATA$FILENAME" not in statement and '$1:"matchableId"::VARCHAR FROM' in statement


def test_each_file_is_converted_from_its_own_encoding_in_a_copy_of_its_own_kind():
    files = [matched_file("m/0.avro", "a"), matched_file("m/1.avro", "b", MICROS), matched_file("m/2.avro", "c"),
             matched_file("m/3.avro", "c", has_id=True)]
    statements = copy_from_stage("s", "t", MATCHED_COLUMNS, "exports", files)
    assert [files_listed(s) for s in statements] == [["m/0.avro", "m/2.avro"], ["m/1.avro"], ["m/3.avro"]]
    millis, micros, with_id = statements
    assert 'TO_TIMESTAMP_NTZ($1:"browserTimestamp"::NUMBER, 3)' in millis and " THEN 'c' END" in millis
    assert 'TO_TIMESTAMP_NTZ($1:"browserTimestamp"::NUMBER, 6)' in micros and "'b' FROM" in micros
    assert '$1:"matchableId"::VARCHAR' in with_id


def test_2000_matchables_of_one_encoding_make_two_copies():
    files = [matched_file(f"m/{n}.avro", f"id-{n}") for n in range(2000)]
    statements = copy_from_stage("s", "t", MATCHED_COLUMNS, "exports", files)
    assert [len(files_listed(s)) for s in statements] == [1000, 1000]


def test_a_field_with_no_known_conversion_is_refused():
    with pytest.raises(ValueError, match="'day'.*no conversion"):
        copy_from_stage("s", "t", [Column("day", ColumnType.DATE, pa.date32(), "string")], "exports", ["a.avro"])


def test_the_file_format_is_avro_unless_told_and_one_of_those_known():
    assert "FILE_FORMAT = (TYPE = PARQUET)" in event_copies(["a.parquet"], file_format="PARQUET")[0]
    with pytest.raises(ValueError, match="file format 'CSV'"):
        event_copies(["a.csv"], file_format="CSV")


# --- What sqlglot reads ------------------------------------------------------------------------------------------

def test_every_statement_parses_as_its_own_kind_of_statement():
    kinds = [type(sqlglot.parse_one(statement, read="snowflake")).__name__ for statement in every_statement()]
    assert kinds == ["Create", "Create", "Alter", "Copy", "Create", "Put", "Copy"]


def test_sqlglot_reads_the_copy_as_meant():
    copy = sqlglot.parse_one(GOLDEN_COPY, read="snowflake")
    assert [c.name for c in copy.this.expressions] == ["PERIODID", "BROWSERTIMESTAMP", "EVENTID", "VISITORID",
                                                       "ACCOUNTID", "NUMEVENTS", "LATITUDE", "PROPERTIES",
                                                       "MATCHABLEID"]
    (source,) = copy.args["files"]
    select = source.this
    assert len(select.expressions) == 9
    assert select.args["from_"].this.name == '@"PENDO_DB"."RAW"."PENDO_EXPORTS"'
    # The files lack matchableId: the slice's literal stands in for it.
    assert {key.this for key in select.find_all(exp.JSONPathKey)} == {
        "periodId", "browserTimestamp", "eventId", "visitorId", "accountId", "numEvents", "latitude", "properties"}
    assert select.expressions[-1].this == FEATURE_ID
    options = {option.this.name: option for option in copy.args["params"]}
    assert list(options) == ["FILES", "FILE_FORMAT", "FORCE", "ON_ERROR"]
    assert options["FORCE"].expression.this is True


# --- Chunking ----------------------------------------------------------------------------------------------------

def test_2500_files_make_three_copies_of_1000_1000_and_500_in_order():
    files = [f"{SLICE_FOLDER}/part-{n:05}.avro" for n in range(2500)]
    statements = event_copies(files)
    listed = [files_listed(statement) for statement in statements]
    assert [len(chunk) for chunk in listed] == [1000, 1000, 500]
    assert [path for chunk in listed for path in chunk] == files


def test_no_files_make_no_copy():
    assert event_copies([]) == []


# --- The rule checker --------------------------------------------------------------------------------------------

GOOD_LOAD = [
    create_schema("pendo_app_1"), create_table("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS),
    add_column("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS[-1]),
    create_temporary_stage("pendo_load_7f3a"), put_file("/tmp/pendo load/part-0.parquet", LOAD_FOLDER),
    "BEGIN",
    'DELETE FROM "PENDO_APP_1"."MATCHEDFEATUREEVENTS" WHERE "PERIODID" = %s',
    *event_copies([f"{SLICE_FOLDER}/part-{n}.avro" for n in range(1500)]),
    copy_staged("pendo_app_1", "matchedFeatureEvents", EVENT_COLUMNS, LOAD_FOLDER),
    'SELECT COUNT(*) FROM "PENDO_APP_1"."MATCHEDFEATUREEVENTS" WHERE "PERIODID" = %s',
    "COMMIT",
    create_table("pendo_app_1", "featureEvents", EVENT_COLUMNS),
    "START TRANSACTION", 'DELETE FROM "PENDO_APP_1"."FEATUREEVENTS"', "ROLLBACK",
    "DROP TABLE IF EXISTS scratch",
]


def test_a_good_load_passes():
    assert check_statements(GOOD_LOAD) == []


@pytest.mark.parametrize("opening, closing", [("BEGIN", "COMMIT"), ("begin transaction", "ROLLBACK"),
                                              ("START TRANSACTION", "COMMIT")])
def test_ddl_inside_a_transaction_is_reported(opening, closing):
    statements = [opening, 'DELETE FROM "S"."T"', add_column("s", "t", EVENT_COLUMNS[0]), closing]
    assert check_statements(statements) == [
        'statement 3 (ALTER TABLE "S"."T" ADD COLUMN IF NOT EXISTS "PERIODID" DATE): '
        "ALTER inside the transaction begun by statement 1; DDL commits an open transaction"]


@pytest.mark.parametrize("ddl", ["CREATE TEMPORARY STAGE x", "  /* why */ drop table t", "TRUNCATE TABLE t",
                                 "GRANT SELECT ON TABLE t TO ROLE r", "-- note\nCOMMENT ON TABLE t IS 'x'"])
def test_every_kind_of_ddl_counts(ddl):
    assert len(check_statements(["BEGIN", ddl, "COMMIT"])) == 1


def test_match_by_column_name_with_a_transformation_is_reported():
    statement = GOLDEN_COPY.replace("FORCE = TRUE", "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE")
    (violation,) = check_statements([statement])
    assert violation.endswith("MATCH_BY_COLUMN_NAME with a transformation (FROM (SELECT ...)); Snowflake rejects it")


def test_match_by_column_name_none_with_a_transformation_is_fine():
    assert check_statements([GOLDEN_COPY.replace("FORCE", "MATCH_BY_COLUMN_NAME = NONE FORCE")]) == []


@pytest.mark.parametrize("statement", [
    GOLDEN_COPY.replace(" FORCE = TRUE", ""), GOLDEN_COPY.replace("FORCE = TRUE", "FORCE = FALSE"),
    GOLDEN_STAGED_COPY.replace(" FORCE = TRUE", ""),
], ids=["transformation-without-force", "force-false", "staged-without-force"])
def test_a_copy_without_force_is_reported(statement):
    (violation,) = check_statements([statement])
    assert violation.endswith("no FORCE = TRUE; files loaded in the last 64 days would be skipped")


def test_a_copy_of_1001_files_is_reported():
    (statement,) = event_copies([f"part-{n}.avro" for n in range(1000)])
    too_many = statement.replace("FILES = (", "FILES = ('part-1000.avro', ")
    (violation,) = check_statements([too_many])
    assert violation.endswith("FILES lists 1001 files; COPY takes at most 1000")


def test_a_copy_sqlglot_cannot_read_is_reported_rather_than_passed():
    (violation,) = check_statements(["COPY INTO t FROM @s FILES = ('a' FORCE = TRUE"])
    assert "sqlglot cannot parse this COPY, so its options go unchecked" in violation


# --- Quoting -----------------------------------------------------------------------------------------------------

def test_identifiers_are_upper_cased_and_quoted_with_their_quotes_doubled():
    assert identifier("matchedFeatureEvents") == '"MATCHEDFEATUREEVENTS"'
    assert identifier('odd"name') == '"ODD""NAME"'
    with pytest.raises(ValueError):
        identifier("")


def test_a_field_name_with_a_quote_is_escaped_in_the_column_and_in_the_path():
    columns = [Column('we"ird', ColumnType.TEXT, pa.large_string(), "string")]
    (statement,) = copy_from_stage("s", "t", columns, "exports", ["a.avro"])
    assert '("WE""IRD") FROM (SELECT $1:"we""ird"::VARCHAR FROM' in statement
    copy = sqlglot.parse_one(statement, read="snowflake")
    assert copy.this.expressions[0].name == 'WE"IRD'
    assert [key.this for key in copy.find_all(exp.JSONPathKey)] == ['we"ird']


def test_file_names_with_quotes_and_backslashes_arrive_intact():
    files = ["export1/it's.avro", "export1/back\\slash.avro", "export1/ünï cødé.avro"]
    (statement,) = copy_from_stage("s", "t", EVENT_COLUMNS, "exports", files)
    assert "FILES = ('export1/it''s.avro', 'export1/back\\\\slash.avro', 'export1/ünï cødé.avro')" in statement
    assert files_listed(statement) == files


def test_a_fill_value_is_an_escaped_literal():
    (statement,) = copy_from_stage("s", "t", [], "exports", [StagedFile("a.avro", (), {"matchableId": "o'k\\"})])
    assert '("MATCHABLEID") FROM (SELECT \'o\'\'k\\\\\' FROM' in statement


@pytest.mark.parametrize("value", ["line\nbreak.avro", "nul\x00.avro", "del\x7f.avro", "c1\x85.avro"])
def test_control_characters_are_refused(value):
    with pytest.raises(ValueError, match="control character"):
        copy_from_stage("s", "t", EVENT_COLUMNS, "exports", [value])
    with pytest.raises(ValueError, match="control character"):
        copy_from_stage("s", "t", EVENT_COLUMNS, "exports", [StagedFile("a.avro", (), {"matchableId": value})])


@pytest.mark.parametrize("path", ["", "/export1/a.avro"])
def test_a_file_path_must_be_relative_to_the_stage(path):
    with pytest.raises(ValueError, match="relative to the stage's root"):
        copy_from_stage("s", "t", EVENT_COLUMNS, "exports", [path])


@pytest.mark.parametrize("stage, quoted", [("exports", '"EXPORTS"'), ("raw.exports", '"RAW"."EXPORTS"'),
                                           ("pendo_db.raw.pendo$exports_2", '"PENDO_DB"."RAW"."PENDO$EXPORTS_2"')])
def test_a_stage_of_one_to_three_names_is_quoted_part_by_part(stage, quoted):
    (statement,) = copy_from_stage("s", "t", EVENT_COLUMNS, stage, ["a.avro"])
    assert f"FROM @{quoted}) FILES" in statement


@pytest.mark.parametrize("stage", ["a.b.c.d", "", "a..b", ".a", "a.", '"quoted"', "1st", "a b", "a;drop", "ä"])
def test_a_bad_stage_name_is_refused(stage):
    with pytest.raises(ValueError, match="must be 1 to 3 names separated by dots"):
        copy_from_stage("s", "t", EVENT_COLUMNS, stage, ["a.avro"])
    with pytest.raises(ValueError, match="must be 1 to 3 names separated by dots"):
        create_temporary_stage(stage)


@pytest.mark.parametrize("prefix", ["", "../up", "a//b", "a/", "a b", "it's", "a/./b"])
def test_a_bad_stage_prefix_is_refused(prefix):
    with pytest.raises(ValueError, match="stage prefix"):
        StagePath("pendo_load_1", prefix)


@pytest.mark.parametrize("path", ["relative/part.parquet", "/tmp/it's.parquet", "/tmp/part-*.parquet",
                                  "/tmp/back\\slash.parquet"])
def test_put_refuses_a_path_the_connector_would_misread(path):
    with pytest.raises(ValueError, match="must be absolute and free of"):
        put_file(path, LOAD_FOLDER)


def test_string_literals_double_quotes_and_backslashes():
    assert string_literal("it's a\\b") == "'it''s a\\\\b'"


# --- Types -------------------------------------------------------------------------------------------------------

def test_types_read_back_as_information_schema_reports_them():
    reported = {"TEXT": ColumnType.TEXT, "BOOLEAN": ColumnType.BOOLEAN, "NUMBER": ColumnType.INT64,
                "FLOAT": ColumnType.FLOAT64, "BINARY": ColumnType.BYTES, "DATE": ColumnType.DATE,
                "TIMESTAMP_NTZ": ColumnType.TIMESTAMP, "VARIANT": ColumnType.JSON}
    assert {name: neutral_type(name) for name in reported} == reported
    assert neutral_type("timestamp_ntz") is ColumnType.TIMESTAMP
    assert neutral_type("TIMESTAMP_TZ") is None
    assert neutral_type("OBJECT") is None


# --- Against a fakesnow server -----------------------------------------------------------------------------------

DAY = date(2024, 4, 14)
FILL_ID = "feat'ure\\9"  # a quote and a backslash, so the literal's escaping is proven end to end


class RecordingCursor:
    """Runs statements on a fakesnow cursor and keeps their text, as a load's test would, for check_statements."""

    def __init__(self, server):
        # A database of its own: fakesnow's databases are catalogs of one DuckDB, so a shared name such as PENDO
        # would make another test's schema `pendo` ambiguous.
        database = unique_database_name("recorder")
        self.connection = snowflake.connector.connect(**{**server.connect_args(), "database": database,
                                                         "paramstyle": "pyformat"})
        self.cursor = self.connection.cursor()
        self.statements: list[str] = []
        self.execute(f'CREATE DATABASE IF NOT EXISTS "{database}"')
        self.execute(f'USE DATABASE "{database}"')

    def execute(self, sql: str, params: Any = None) -> list[tuple]:
        self.statements.append(sql)
        return self.cursor.execute(sql, params).fetchall()


@pytest.fixture
def recorder(snowflake_server) -> Iterator[RecordingCursor]:
    cursor = RecordingCursor(snowflake_server)
    yield cursor
    cursor.connection.close()


def test_fakesnow_reports_each_created_type_as_neutral_type_reads_it(recorder):
    columns = [Column(f"c_{t.value.lower()}", t, pa.null()) for t in ColumnType]
    recorder.execute(create_schema("types"))
    recorder.execute(create_table("types", "every_type", columns[:1]))
    for column in columns[1:]:
        recorder.execute(add_column("types", "every_type", column))
    reported = recorder.execute("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS "
                                 "WHERE TABLE_SCHEMA = 'TYPES' AND TABLE_NAME = 'EVERY_TYPE'")
    widened = {ColumnType.INT32: ColumnType.INT64, ColumnType.FLOAT32: ColumnType.FLOAT64}
    assert {name: neutral_type(data_type) for name, data_type in reported} == {
        c.name.upper(): widened.get(c.type, c.type) for c in columns}
    assert set(SNOWFLAKE_TYPES) == set(ColumnType)


# The raw files hold periodId as Pendo's plain int (days in one file, yyyymmdd in the other) and no matchableId.
RAW_COLUMNS = columns_of(("periodId", "int"), ("browserTimestamp", MILLIS), ("eventId", "string"),
                         ("properties", ["null", {"type": "map", "values": "string"}]))
TABLE_COLUMNS = [*RAW_COLUMNS, Column("matchableId", ColumnType.TEXT, pa.large_string())]


def raw_file(path: Path, period_id: int, event_ids: list[str]) -> None:
    """A file as the Avro export holds the rows (fakesnow reads no Avro): the field's raw encodings, and a null
    matchableId column standing for the absent field, since fakesnow cannot read a column a file lacks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(event_ids)
    pq.write_table(pa.table({
        "periodId": pa.array([period_id] * count, pa.int32()),
        "browserTimestamp": pa.array([1713052800123 + n for n in range(count)], pa.int64()),
        "eventId": event_ids,
        "properties": pa.array([[("k", f"v{n}")] for n in range(count)], pa.map_(pa.string(), pa.string())),
        "matchableId": pa.array([None] * count, pa.string()),
    }), path)


def decoded_file(path: Path, event_ids: list[str]) -> None:
    """The rows as the Python decoder gives them (JSON text, matchableId filled in), staged as the staged path
    stages them (`staged_rows`)."""
    count = len(event_ids)
    decoded = pa.table({
        "periodId": pa.array([DAY] * count, pa.date32()),
        "browserTimestamp": pa.array([datetime(2024, 4, 14, 0, 0, 0, 123000 + 1000 * n) for n in range(count)],
                                     pa.timestamp("ms")),
        "eventId": pa.array(event_ids, pa.large_string()),
        "properties": pa.array([json.dumps({"k": f"v{n}"}) for n in range(count)], pa.large_string()),
        "matchableId": pa.array([FILL_ID] * count, pa.large_string())})
    schema = staged_parquet_schema(TABLE_COLUMNS)
    pq.write_table(staged_rows(decoded, TABLE_COLUMNS, schema), path)


def test_both_copies_load_the_same_rows_inside_one_transaction(recorder, tmp_path):
    exports, local = tmp_path / "exports", tmp_path / "decoded"
    slice_folder = "export41/matchedEvents/feature"
    raw_file(exports / slice_folder / "it's-0.parquet", 19827, ["e0", "e1"])
    raw_file(exports / slice_folder / "part-1.parquet", 20240414, ["e2"])
    local.mkdir()
    decoded_file(local / "part-0.parquet", ["e0", "e1"])
    decoded_file(local / "part-1.parquet", ["e2"])
    load_folder = StagePath("pendo_load_1", "matchedFeatureEvents/2024-04-14")

    recorder.execute(create_schema("pendo_app_1"))
    for table in ("fromBucket", "fromStagedParquet"):
        recorder.execute(create_table("pendo_app_1", table, TABLE_COLUMNS))
    # The user's external stage; fakesnow reads a file:// URL where Snowflake would read the bucket.
    recorder.execute(f"CREATE STAGE \"PENDO\".\"RAW\".\"EXPORTS\" URL={string_literal(f'file://{exports}/')}")
    recorder.execute(create_temporary_stage("pendo_load_1"))
    for name in ("part-0.parquet", "part-1.parquet"):
        recorder.execute(put_file(local / name, load_folder))

    recorder.execute("BEGIN")
    for table in ("fromBucket", "fromStagedParquet"):
        recorder.execute(f"DELETE FROM {identifier('pendo_app_1')}.{identifier(table)} WHERE \"PERIODID\" = %s",
                          (DAY,))
    loaded = []
    raw_files = [StagedFile(f"{slice_folder}/{name}", tuple(RAW_COLUMNS), {"matchableId": FILL_ID})
                 for name in ("it's-0.parquet", "part-1.parquet")]
    for statement in copy_from_stage("pendo_app_1", "fromBucket", RAW_COLUMNS, "pendo.raw.exports", raw_files,
                                     file_format="PARQUET"):
        loaded += recorder.execute(statement)
    loaded += recorder.execute(copy_staged("pendo_app_1", "fromStagedParquet", TABLE_COLUMNS, load_folder))
    recorder.execute("COMMIT")

    assert [(status, parsed, rows) for _, status, parsed, rows, *_ in loaded] == [
        ("LOADED", 2, 2), ("LOADED", 1, 1), ("LOADED", 2, 2), ("LOADED", 1, 1)]
    rows = {table: recorder.execute(
        'SELECT "PERIODID", "BROWSERTIMESTAMP", "EVENTID", "PROPERTIES":"k"::VARCHAR, "MATCHABLEID" '
        f'FROM "PENDO_APP_1".{identifier(table)} ORDER BY "EVENTID"') for table in ("fromBucket", "fromStagedParquet")}
    assert rows["fromBucket"] == rows["fromStagedParquet"] == [
        (DAY, datetime(2024, 4, 14, 0, 0, 0, 123000), "e0", "v0", FILL_ID),
        (DAY, datetime(2024, 4, 14, 0, 0, 0, 124000), "e1", "v1", FILL_ID),
        (DAY, datetime(2024, 4, 14, 0, 0, 0, 123000), "e2", "v0", FILL_ID)]
    assert check_statements(recorder.statements) == []


# --- Staged rows: each batch from its own encoding ----------------------------------------------------------------

STAGED_COLUMNS = [Column("periodId", ColumnType.DATE, pa.date32()),
                  Column("at", ColumnType.TIMESTAMP, pa.timestamp("ms")), Column("n", ColumnType.INT64, pa.int64()),
                  Column("raw", ColumnType.BYTES, pa.binary()), Column("absent", ColumnType.TEXT, pa.large_string())]


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_a_batch_is_staged_from_its_own_timestamp_unit_so_millis_and_micros_files_agree(unit):
    at = datetime(2024, 4, 14, 1, 2, 3, 123000 if unit == "ms" else 123456)
    batch = pa.table({"periodId": pa.array([date(2024, 4, 14)], pa.date32()),
                      "at": pa.array([at], pa.timestamp(unit)), "n": pa.array([7], pa.int32()),
                      "raw": pa.array([b"\x00\xffA"], pa.binary())})
    schema = staged_parquet_schema(STAGED_COLUMNS)
    staged = staged_rows(batch, STAGED_COLUMNS, schema)
    assert staged.schema == schema
    expected_micros = int((at - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    assert staged.to_pylist() == [{"c0": 19827, "c1": expected_micros, "c2": 7, "c3": "00ff41", "c4": None}]


def test_the_staged_copy_reads_microseconds_and_hex_bytes():
    statement = copy_staged("s", "t", STAGED_COLUMNS, LOAD_FOLDER)
    assert 'TO_TIMESTAMP_NTZ($1:"c1"::NUMBER, 6)' in statement
    assert "TO_BINARY($1:\"c3\"::VARCHAR, 'HEX')" in statement
