"""The Snowflake load path's SQL, as text: plain functions, no connection, no Dagster.

Every schema, table and column is created upper-cased and quoted (`identifier`): Snowflake upper-cases unquoted
names, so the tables answer Pendo's own SQL, which writes them unquoted (`f.featureId = mfe.matchableId`).
COPY takes no bind parameters for file paths or fill values, so those go in as escaped string literals
(`string_literal`); names go in only through `identifier` (or quote_ident, for an Avro field's exact name).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping, Sequence

import pyarrow as pa
import sqlglot
from sqlglot import exp

from pendo_assets.pendo.avro import PERIOD_COLUMN, Column, ColumnType
from pendo_assets.warehouse.sql import quote_ident

# COPY's FILES = (...) takes at most this many paths.
MAX_FILES_PER_COPY = 1000
# A periodId integer below this is days since 1970 (this many days is the year 29349); above it, yyyymmdd.
PERIOD_DAYS_LIMIT = 10_000_000
# The file formats a transformation COPY reads: AVRO in production, PARQUET where fakesnow stands in (no Avro COPY).
FILE_FORMATS = ("AVRO", "PARQUET")

SNOWFLAKE_TYPES: dict[ColumnType, str] = {
    ColumnType.TEXT: "VARCHAR", ColumnType.BOOLEAN: "BOOLEAN", ColumnType.INT32: "NUMBER(38,0)",
    ColumnType.INT64: "NUMBER(38,0)", ColumnType.FLOAT32: "FLOAT", ColumnType.FLOAT64: "FLOAT",
    ColumnType.BYTES: "BINARY", ColumnType.DATE: "DATE", ColumnType.TIMESTAMP: "TIMESTAMP_NTZ",
    ColumnType.JSON: "VARIANT",
}
# INFORMATION_SCHEMA.COLUMNS.DATA_TYPE of each type above, as Snowflake and the fakesnow server both report it.
# NUMBER reads back as the wider integer; a NUMBER with a scale reports NUMBER too (NUMERIC_SCALE tells).
_REPORTED_TYPES: dict[str, ColumnType] = {
    "TEXT": ColumnType.TEXT, "BOOLEAN": ColumnType.BOOLEAN, "NUMBER": ColumnType.INT64, "FLOAT": ColumnType.FLOAT64,
    "BINARY": ColumnType.BYTES, "DATE": ColumnType.DATE, "TIMESTAMP_NTZ": ColumnType.TIMESTAMP,
    "VARIANT": ColumnType.JSON,
}
# Staged Parquet holds dates and timestamps as plain integers (see `staged_parquet_schema`).
# How each type is staged as Parquet, whatever the encoding of the file a value came from (`staged_parquet_schema`),
# and the Avro type that reads the same way, so the staged COPY converts with the Avro COPY's own rules.
STAGED_LAYOUT: dict[ColumnType, tuple[pa.DataType, Any]] = {
    ColumnType.TEXT: (pa.large_string(), "string"), ColumnType.BOOLEAN: (pa.bool_(), "boolean"),
    ColumnType.INT32: (pa.int64(), "long"), ColumnType.INT64: (pa.int64(), "long"),
    ColumnType.FLOAT32: (pa.float64(), "double"), ColumnType.FLOAT64: (pa.float64(), "double"),
    # Parquet binary would be read back as text (BINARY_AS_TEXT defaults to TRUE): bytes travel as hex.
    ColumnType.BYTES: (pa.large_string(), "string"),
    ColumnType.DATE: (pa.int32(), {"type": "int", "logicalType": "date"}),
    ColumnType.TIMESTAMP: (pa.int64(), {"type": "long", "logicalType": "timestamp-micros"}),
    ColumnType.JSON: (pa.large_string(), "string"),  # JSON text, parsed by the COPY
}
# The cast a value bound as JSON text takes to become each Arrow type's column (`insert_json`).
_JSON_CASTS = ((pa.types.is_boolean, "BOOLEAN"), (pa.types.is_integer, "NUMBER(38,0)"),
               (pa.types.is_floating, "FLOAT"), (pa.types.is_date, "DATE"), (pa.types.is_timestamp, "TIMESTAMP_NTZ"),
               (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "VARCHAR"))
_TIMESTAMP_SCALES = {"timestamp-millis": 3, "timestamp-micros": 6}
# A stage name as Snowflake resolves it unquoted; `identifier` then upper-cases it, as Snowflake would.
_UNQUOTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# A stage prefix stays unquoted after the `@`, so only characters that need no quoting there.
_PREFIX_PART = re.compile(r"[A-Za-z0-9_.=-]+")
# The connector reads a PUT's local path itself: it ends a quoted path at the first quote (for GCS-hosted
# accounts), expands * and ? as wildcards, and backslashes would be escapes in the literal.
_PUT_PATH_REFUSED = "'\\*?"
_DDL_VERBS = frozenset({"CREATE", "ALTER", "DROP", "UNDROP", "TRUNCATE", "GRANT", "REVOKE", "COMMENT"})
# A statement's first two words, after any whitespace and comments.
_LEADING_WORDS = re.compile(r"(?:\s|--[^\n]*|/\*.*?\*/)*([A-Za-z_]+)(?:\s+([A-Za-z_]+))?", re.DOTALL)


def identifier(name: str) -> str:
    """A schema, table or column name as Snowflake stores it unquoted: upper-cased, then quoted."""
    return quote_ident(name.upper())


def string_literal(value: str) -> str:
    """A Snowflake string constant. Backslash is an escape character there, so it is doubled, as is a quote.

    Control characters are refused: no file path or id has a reason to hold one.
    """
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise ValueError(f"refusing a value with a control character in SQL: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def neutral_type(snowflake_data_type: str) -> ColumnType | None:
    """The neutral type of a column whose INFORMATION_SCHEMA.COLUMNS.DATA_TYPE is given.

    None for a type this project never creates (TIMESTAMP_TZ, OBJECT, ...): the caller reports a conflict.
    """
    return _REPORTED_TYPES.get(snowflake_data_type.upper())


def create_schema(schema: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {identifier(schema)}"


def create_table(schema: str, table: str, columns: Sequence[Column]) -> str:
    if not columns:
        raise ValueError(f"table {schema}.{table} needs at least one column")
    spec = ", ".join(f"{identifier(c.name)} {SNOWFLAKE_TYPES[c.type]}" for c in columns)
    return f"CREATE TABLE IF NOT EXISTS {_table(schema, table)} ({spec})"


def add_column(schema: str, table: str, column: Column) -> str:
    return (f"ALTER TABLE {_table(schema, table)} "
            f"ADD COLUMN IF NOT EXISTS {identifier(column.name)} {SNOWFLAKE_TYPES[column.type]}")


@dataclass(frozen=True)
class StagedFile:
    """A file a COPY reads from the user's stage: its path relative to the stage's root, its own columns as its
    header gives them (None: as the table's), and values for columns it lacks (a matched file's matchableId)."""

    path: str
    columns: tuple[Column, ...] | None = None
    fill: Mapping[str, str] = field(default_factory=dict)


def copy_from_stage(schema: str, table: str, columns: Sequence[Column], stage: str,
                    files: Sequence[str | StagedFile], file_format: str = "AVRO") -> list[str]:
    """COPY statements loading `files` into the table's `columns`: one per 1,000 files that encode their fields
    alike, so the statements grow with files, not with the slices or matchables they belong to.

    Each file is converted from its own Avro encoding (Snowflake has no logical types for Avro, so the COPY
    converts, and names its columns: no MATCH_BY_COLUMN_NAME); files that encode a field differently (millis and
    micros, an int or a string periodId) go to different statements. A column a file lacks takes the file's
    `fill` value: one literal when the statement's files share it, else chosen by METADATA$FILENAME.
    FORCE = TRUE: a day replaced from the same files must load them again, whatever the load metadata says.
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file format {file_format!r} is not one of {', '.join(FILE_FORMATS)}")
    staged = [StagedFile(f) if isinstance(f, str) else f for f in files]
    known = {c.name.upper() for c in columns}
    fill_names = [n for f in staged for n in f.fill if n.upper() not in known]
    targets = [*columns, *(Column(name, ColumnType.TEXT, pa.large_string(), "string")
                           for name in dict.fromkeys(fill_names))]
    if not targets:
        raise ValueError(f"nothing to copy into {schema}.{table}: no columns")
    groups: dict[tuple, list[StagedFile]] = {}
    for f in staged:
        _stage_file(f.path)
        groups.setdefault(tuple(_source(target, f) for target in targets), []).append(f)
    head = f"COPY INTO {_table(schema, table)} ({', '.join(identifier(c.name) for c in targets)})"
    options = f"FILE_FORMAT = (TYPE = {file_format}) FORCE = TRUE ON_ERROR = ABORT_STATEMENT"
    statements = []
    for sources, group in groups.items():
        for start in range(0, len(group), MAX_FILES_PER_COPY):
            chunk = group[start:start + MAX_FILES_PER_COPY]
            values = [_filled(target, chunk) if source is _FILLED else source
                      for target, source in zip(targets, sources)]
            statements.append(f"{head} FROM (SELECT {', '.join(values)} FROM @{_stage(stage)}) "
                              f"FILES = ({', '.join(_stage_file(f.path) for f in chunk)}) {options}")
    return statements


# A column whose value comes from the file's `fill`, not from the file.
_FILLED = object()


def _source(target: Column, f: StagedFile) -> Any:
    """The SELECT expression giving `target` its value from file `f`, or _FILLED."""
    if f.columns is None:
        return _converted(target)
    own = {c.name.lower(): c for c in f.columns}.get(target.name.lower())
    if own is None and _fill_of(f, target) is not None:
        return _FILLED
    return _converted(Column(target.name, target.type, target.arrow_type,
                             own.avro_type if own is not None else target.avro_type))


def _fill_of(f: StagedFile, target: Column) -> str | None:
    return {name.upper(): value for name, value in f.fill.items()}.get(target.name.upper())


def _filled(target: Column, files: Sequence[StagedFile]) -> str:
    """The fill value of the files of one COPY: a literal when they share it, else the value of each file's own
    path, as METADATA$FILENAME names it (relative to the stage, or with the stage's path before it)."""
    values = {f.path: _fill_of(f, target) or "" for f in files}
    if len(set(values.values())) == 1:
        return string_literal(next(iter(values.values())))
    cases = " ".join(f"WHEN METADATA$FILENAME = {string_literal(path)} OR ENDSWITH(METADATA$FILENAME, "
                     f"{string_literal('/' + path)}) THEN {string_literal(value)}" for path, value in values.items())
    return f"CASE {cases} END"


@dataclass(frozen=True)
class StagePath:
    """A folder of an internal stage, written `@"STAGE"/prefix/`: a load's Parquet files go there and COPY reads
    all of them. The prefix is the loader's own name for the load, so it is held to characters needing no quotes."""

    stage: str
    prefix: str

    def __post_init__(self) -> None:
        _stage(self.stage)
        if not all(_PREFIX_PART.fullmatch(part) and part not in (".", "..") for part in self.prefix.split("/")):
            raise ValueError(f"stage prefix {self.prefix!r} must be names of letters, digits, _ . = or - "
                             "separated by single slashes")

    def __str__(self) -> str:
        # The closing slash keeps prefix `day-1` from also reading `day-10/`.
        return f"@{_stage(self.stage)}/{self.prefix}/"


def create_temporary_stage(name: str) -> str:
    return f"CREATE TEMPORARY STAGE {_stage(name)}"


def put_file(local_path: str | PurePath, stage_path: StagePath) -> str:
    path = PurePath(local_path)
    text = path.as_posix()
    if not path.is_absolute() or any(character in text for character in _PUT_PATH_REFUSED):
        raise ValueError(f"cannot PUT {text!r}: the path must be absolute and free of ' \\ * ?")
    return f"PUT {string_literal('file://' + text)} {stage_path} AUTO_COMPRESS=FALSE OVERWRITE=TRUE"


def staged_parquet_schema(columns: Sequence[Column]) -> pa.Schema:
    """How decoded rows are staged as Parquet for `copy_staged`: every column in every part (NULL where a file
    lacks the field), named by position (an Avro name may be a SQL keyword, which fakesnow's COPY cannot read),
    each type in one layout whatever its file's encoding (`STAGED_LAYOUT`): dates as days, timestamps as
    microseconds, bytes as hex, JSON as text."""
    return pa.schema([pa.field(_staged_name(i), STAGED_LAYOUT[c.type][0]) for i, c in enumerate(columns)])


def copy_staged(schema: str, table: str, columns: Sequence[Column], stage_path: StagePath) -> str:
    """COPY every Parquet part under `stage_path`, laid out by `staged_parquet_schema`.

    A transformation with the same conversions as the Avro COPY, rather than MATCH_BY_COLUMN_NAME: a Parquet
    string loaded by name into a VARIANT column stays a string, while PARSE_JSON makes the object Pendo meant.
    No FILES =: the folder holds this load's parts only, and fakesnow cannot take FILES = on an internal stage.
    """
    staged = [Column(_staged_name(i), c.type, STAGED_LAYOUT[c.type][0], STAGED_LAYOUT[c.type][1])
              for i, c in enumerate(columns)]
    return (f"COPY INTO {_table(schema, table)} ({', '.join(identifier(c.name) for c in columns)}) "
            f"FROM (SELECT {', '.join(_converted(c) for c in staged)} FROM {stage_path}) "
            "FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE ON_ERROR = ABORT_STATEMENT")


def insert_json(schema: str, table: str, columns: pa.Schema) -> str:
    """An INSERT of many rows bound as one JSON array of arrays (`?`), each value cast to its column's type.

    One bind, whatever the rows: the connector stages an array binding of rows x columns at or above the session's
    CLIENT_STAGE_ARRAY_BINDING_THRESHOLD with a CREATE TEMPORARY STAGE, which commits the open transaction."""
    values = ", ".join(f"value[{i}]::{_json_cast(f.type)}" for i, f in enumerate(columns))
    return (f"INSERT INTO {_table(schema, table)} ({', '.join(identifier(f.name) for f in columns)}) "
            f"SELECT {values} FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))")


def _json_cast(arrow_type: pa.DataType) -> str:
    for matches, cast in _JSON_CASTS:
        if matches(arrow_type):
            return cast
    raise ValueError(f"no JSON binding for Arrow type {arrow_type}")


def _staged_name(position: int) -> str:
    return f"c{position}"


def check_statements(statements: Sequence[str]) -> list[str]:
    """The rules a load's statements must keep, as the violations found (none: the sequence is fine).

    No DDL between BEGIN and the next COMMIT or ROLLBACK (DDL commits the open transaction); every COPY has
    FORCE = TRUE and lists at most 1,000 FILES; no COPY with a transformation has MATCH_BY_COLUMN_NAME.

    A statement's kind is read from its leading keywords, as text: sqlglot parses START TRANSACTION as an alias
    and cannot parse a recorded statement holding %s placeholders. A COPY's options are read from sqlglot's parse,
    allowing for how it represents them: option names keep their case, and FILES of one path is a Paren, of
    several a Tuple. A COPY sqlglot cannot parse is itself a violation, since its options go unchecked.
    """
    violations = []
    transaction_start = None
    for number, sql in enumerate(statements, 1):
        words = _leading_words(sql)
        if words[:1] == ["BEGIN"] or words == ["START", "TRANSACTION"]:
            transaction_start = number
        elif words[:1] in (["COMMIT"], ["ROLLBACK"]):
            transaction_start = None
        elif transaction_start is not None and words[:1] and words[0] in _DDL_VERBS:
            violations.append(f"statement {number} ({_excerpt(sql)}): {words[0]} inside the transaction begun by "
                              f"statement {transaction_start}; DDL commits an open transaction")
        if words[:1] == ["COPY"]:
            violations.extend(f"statement {number} ({_excerpt(sql)}): {problem}" for problem in _copy_problems(sql))
    return violations


def _table(schema: str, table: str) -> str:
    return f"{identifier(schema)}.{identifier(table)}"


def _stage(name: str) -> str:
    """A stage named `stage`, `schema.stage` or `database.schema.stage`, each part quoted via `identifier`."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(_UNQUOTED_NAME.fullmatch(part) for part in parts):
        raise ValueError(f"stage name {name!r} must be 1 to 3 names separated by dots (database.schema.stage), "
                         "each of letters, digits, _ or $ and not starting with a digit")
    return ".".join(identifier(part) for part in parts)


def _stage_file(path: str) -> str:
    if not path or path.startswith("/"):
        raise ValueError(f"file path {path!r} must be relative to the stage's root")
    return string_literal(path)


def _converted(column: Column) -> str:
    """The SELECT expression turning the file's value of `column` into the column's Snowflake type."""
    field = f"$1:{quote_ident(column.name)}"  # the Avro field name exactly; a path element quotes like a name
    base, logical = _avro_base(column.avro_type)
    if column.type is ColumnType.DATE:
        if (base, logical) == ("int", "date"):
            return f"DATEADD(day, {field}::INT, '1970-01-01'::DATE)"
        if column.name == PERIOD_COLUMN and base in ("int", "long") and logical is None:
            number = f"{field}::INT"
            return (f"IFF({number} < {PERIOD_DAYS_LIMIT}, DATEADD(day, {number}, '1970-01-01'::DATE), "
                    f"TO_DATE(TO_VARCHAR({number}), 'YYYYMMDD'))")
        if column.name == PERIOD_COLUMN and base == "string":
            return f"TO_DATE(LEFT({field}::VARCHAR, 10))"
    elif column.type is ColumnType.TIMESTAMP:
        if base == "long" and logical in _TIMESTAMP_SCALES:
            return f"TO_TIMESTAMP_NTZ({field}::NUMBER, {_TIMESTAMP_SCALES[logical]})"
    elif column.type is ColumnType.JSON:
        return f"PARSE_JSON({field}::VARCHAR)" if base == "string" else field
    elif column.type is ColumnType.BYTES and base == "string":
        return f"TO_BINARY({field}::VARCHAR, 'HEX')"
    else:
        return f"{field}::{SNOWFLAKE_TYPES[column.type]}"
    raise ValueError(f"field {column.name!r}: no conversion from Avro {column.avro_type!r} to {column.type.value}")


def _avro_base(avro_type: Any) -> tuple[str | None, str | None]:
    """An Avro type's base name and logical type; (None, None) for a union or a nested named type."""
    if isinstance(avro_type, str):
        return avro_type, None
    if isinstance(avro_type, dict) and isinstance(avro_type.get("type"), str):
        return avro_type["type"], avro_type.get("logicalType")
    return None, None


def _copy_problems(sql: str) -> list[str]:
    try:
        copy = sqlglot.parse_one(sql, read="snowflake")
    except sqlglot.errors.SqlglotError as exc:
        return [f"sqlglot cannot parse this COPY, so its options go unchecked ({str(exc).splitlines()[0]})"]
    if not isinstance(copy, exp.Copy):
        return [f"sqlglot reads this COPY as {type(copy).__name__}, so its options go unchecked"]
    problems = []
    transformation = any(isinstance(source, exp.Subquery) for source in copy.args.get("files") or [])
    forced = False
    for option in copy.args.get("params") or []:
        name, value = option.this.name.upper(), option.expression
        if name == "FILES":
            count = len(value.expressions) if isinstance(value, exp.Tuple) else 1
            if count > MAX_FILES_PER_COPY:
                problems.append(f"FILES lists {count} files; COPY takes at most {MAX_FILES_PER_COPY}")
        elif name == "MATCH_BY_COLUMN_NAME" and transformation and value.name.upper() != "NONE":
            problems.append("MATCH_BY_COLUMN_NAME with a transformation (FROM (SELECT ...)); Snowflake rejects it")
        elif name == "FORCE":
            forced = isinstance(value, exp.Boolean) and value.this is True
    if not forced:
        problems.append("no FORCE = TRUE; files loaded in the last 64 days would be skipped")
    return problems


def _leading_words(sql: str) -> list[str]:
    words = _LEADING_WORDS.match(sql)
    return [word.upper() for word in words.groups() if word] if words else []


def _excerpt(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 60 else text[:57] + "..."
