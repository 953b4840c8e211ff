"""What the tests know about a Snowflake statement from its text alone, and the records of the test server's
statement log. Plain functions, no connector and no server: the test server (its own process) and the rules over
recorded statements (snowflake_recording.py) read statements the same way.

A statement's kind follows Snowflake's documented transaction rules
(https://docs.snowflake.com/en/sql-reference/transactions): DDL (CREATE, ALTER, DROP, UNDROP, COMMENT, GRANT,
REVOKE; CTAS is a CREATE) commits an open transaction, then runs in its own. TRUNCATE is DML there, and ALTER SESSION
changes the session, not an object; neither counts as DDL here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

# Whitespace and comments before a statement's first word.
_LEAD = r"(?:\s|--[^\n]*(?:\n|$)|//[^\n]*(?:\n|$)|/\*.*?\*/)*"
_WORDS = re.compile(_LEAD + r"([A-Za-z_]+)(?:\s+([A-Za-z_]+))?", re.DOTALL)
_DDL_VERBS = frozenset({"CREATE", "ALTER", "DROP", "UNDROP", "COMMENT", "GRANT", "REVOKE"})
_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_END = r"\s*;?\s*$"
# BEGIN [ { WORK | TRANSACTION } ] [ NAME <name> ] and START TRANSACTION [ NAME <name> ] (docs: sql/begin).
_BEGIN = re.compile(_LEAD + r"(?:BEGIN(?:\s+(?:WORK|TRANSACTION))?|START\s+TRANSACTION)"
                    rf"(?:\s+NAME\s+(?P<name>{_IDENTIFIER}))?" + _END, re.IGNORECASE | re.DOTALL)
_END_TRANSACTION = re.compile(_LEAD + r"(?:COMMIT|ROLLBACK)(?:\s+WORK)?" + _END, re.IGNORECASE | re.DOTALL)
# The stage snowflake-connector-python 4.8.1 creates before uploading an executemany's binds
# (bind_upload_agent.py, _utils.py): `create or replace TEMP stage SYSTEMBIND ...`, or SCOPED TEMPORARY
# SNOWPARK_TEMP_STAGE_BIND when Snowpark asks for scoped objects.
_BIND_STAGE = re.compile(_LEAD + r"CREATE\s+OR\s+REPLACE\s+(?:SCOPED\s+)?TEMP(?:ORARY)?\s+STAGE\s+"
                         r"(?:SYSTEMBIND|SNOWPARK_TEMP_STAGE_BIND)\b", re.IGNORECASE | re.DOTALL)
_ALTER_SESSION = re.compile(_LEAD + r"ALTER\s+SESSION\s+(?P<verb>SET|UNSET)\s+(?P<rest>.*?)" + _END,
                            re.IGNORECASE | re.DOTALL)
_ASSIGNMENT = re.compile(r"\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.|'')*'|[^\s,;]+)", re.DOTALL)
_NAME = re.compile(r"\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)")
# DELETE FROM t, UPDATE t, MERGE INTO t: the table a write that locks it names, as 1 to 3 dotted parts.
_LOCKING_WRITE = re.compile(_LEAD + rf"(?:DELETE\s+FROM|UPDATE|MERGE\s+INTO)\s+(?P<table>{_IDENTIFIER}"
                            rf"(?:\s*\.\s*{_IDENTIFIER}){{0,2}})", re.IGNORECASE | re.DOTALL)
_USE_SCHEMA = re.compile(_LEAD + rf"USE\s+SCHEMA\s+(?P<schema>{_IDENTIFIER}(?:\s*\.\s*{_IDENTIFIER})?)" + _END,
                         re.IGNORECASE | re.DOTALL)
_PART = re.compile(_IDENTIFIER)
_CURRENT_TRANSACTION = re.compile(_LEAD + r"SELECT\s+CURRENT_TRANSACTION\s*\(\s*\)"
                                  rf"(?:\s+(?:AS\s+)?(?P<alias>{_IDENTIFIER}))?" + _END, re.IGNORECASE | re.DOTALL)
_SHOW_TRANSACTIONS = re.compile(_LEAD + r"SHOW\s+TRANSACTIONS(?P<account>\s+IN\s+ACCOUNT)?" + _END,
                                re.IGNORECASE | re.DOTALL)
_ABORT_TRANSACTION = re.compile(_LEAD + r"SELECT\s+(?P<call>SYSTEM\$ABORT_TRANSACTION\s*\(\s*"
                                r"(?:(?P<quote>'?)(?P<id>-?\d+)(?P=quote)|(?P<bound>\?))\s*\))" + _END,
                                re.IGNORECASE | re.DOTALL)


def leading_words(sql: str) -> list[str]:
    """A statement's first two words, upper-cased, after any whitespace and comments."""
    words = _WORDS.match(sql)
    return [word.upper() for word in words.groups() if word] if words else []


@dataclass(frozen=True)
class Begin:
    name: str | None  # as written, unquoted; None when the statement names none


def begin_of(sql: str) -> Begin | None:
    """The BEGIN or START TRANSACTION this statement is, or None. A Snowflake Scripting block (BEGIN ... END) is
    not one."""
    found = _BEGIN.match(sql)
    if found is None:
        return None
    name = found["name"]
    return Begin(_unquoted(name) if name else None)


def ends_transaction(sql: str) -> bool:
    return _END_TRANSACTION.match(sql) is not None


def is_ddl(sql: str) -> bool:
    """Whether Snowflake commits an open transaction before running this statement."""
    words = leading_words(sql)
    return bool(words) and words[0] in _DDL_VERBS and words[:2] != ["ALTER", "SESSION"]


def is_bind_stage(sql: str) -> bool:
    """Whether this is the connector's own `create or replace TEMP stage SYSTEMBIND ...`."""
    return _BIND_STAGE.match(sql) is not None


def session_settings(sql: str) -> tuple[dict[str, Any], list[str]] | None:
    """What an ALTER SESSION sets (name -> value, names upper-cased) and unsets, or None for another statement.

    Values as Snowflake reads them: 'text' (quotes undone), TRUE/FALSE, numbers, or a bare word as text.
    """
    found = _ALTER_SESSION.match(sql)
    if found is None:
        return None
    rest = found["rest"]
    if found["verb"].upper() == "UNSET":
        return {}, [name.upper() for name in _NAME.findall(rest)]
    return {name.upper(): _value(text) for name, text in _ASSIGNMENT.findall(rest)}, []


def locked_table(sql: str) -> tuple[str, ...] | None:
    """The table a DELETE, UPDATE or MERGE writes (which locks it against other such writes), as its dotted name's
    parts, unquoted; None for any other statement."""
    found = _LOCKING_WRITE.match(sql)
    return _parts(found["table"]) if found else None


def used_schema(sql: str) -> str | None:
    """The schema a USE SCHEMA statement makes current (its last part, unquoted), or None."""
    found = _USE_SCHEMA.match(sql)
    return _parts(found["schema"])[-1] if found else None


def current_transaction_column(sql: str) -> str | None:
    """For `SELECT CURRENT_TRANSACTION()` (optionally aliased), the name of its one column; else None."""
    found = _CURRENT_TRANSACTION.match(sql)
    if found is None:
        return None
    return _unquoted(found["alias"]) if found["alias"] else "CURRENT_TRANSACTION()"


def shows_transactions(sql: str) -> bool | None:
    """For SHOW TRANSACTIONS, whether it asks for the whole account's (IN ACCOUNT); else None."""
    found = _SHOW_TRANSACTIONS.match(sql)
    return None if found is None else bool(found["account"])


def transaction_to_abort(sql: str, bound: Sequence[Any] = ()) -> tuple[int, str] | None:
    """For `SELECT SYSTEM$ABORT_TRANSACTION(<id>)`, or `(?)` with the id `bound`, the id and the column's name (the
    call as written); else None."""
    found = _ABORT_TRANSACTION.match(sql)
    if found is None or (found["bound"] and len(bound) != 1):
        return None
    return int(bound[0] if found["bound"] else found["id"]), found["call"].upper()


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(_unquoted(part) for part in _PART.findall(dotted))


def _unquoted(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _value(text: str) -> Any:
    if text.startswith("'"):
        return re.sub(r"\\(.)", r"\1", text[1:-1].replace("''", "'"))
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper() == "TRUE"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


# The statement log: one JSON object a line, written by the test server, read by FakeSnowflakeServer.
@dataclass(frozen=True)
class LoggedLogin:
    """A session the server opened, with the session parameters its client sent."""

    session: int
    user: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    event: str = "login"


@dataclass(frozen=True)
class LoggedStatement:
    """A statement as the server received it. `transaction`: the id of the transaction open in its session when it
    arrived (None: none was). `refused`: the server answered it with an error instead of running it.
    `committed`: the transaction this DDL committed before it ran. `aborted`: the transaction a
    SYSTEM$ABORT_TRANSACTION rolled back. `succeeded`: the answer the client got."""

    session: int
    sql: str
    transaction: int | None
    succeeded: bool
    refused: bool = False
    committed: int | None = None
    aborted: int | None = None
    bound_rows: int | None = None  # rows of an array binding (an executemany sent inline)
    settings: dict[str, Any] = field(default_factory=dict)  # what an ALTER SESSION set
    event: str = "statement"


@dataclass(frozen=True)
class LoggedLogout:
    """A session its client closed; any transaction it left open was rolled back, as Snowflake does."""

    session: int
    rolled_back: int | None
    event: str = "logout"


LOG_RECORDS = {record.event: record for record in (LoggedLogin, LoggedStatement, LoggedLogout)}
