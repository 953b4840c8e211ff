"""Every statement the Snowflake connector sends, recorded at the connector's cursor class, and the rules a load's
statements must keep: for tests on the fakesnow test server or on a real account.

`record_statements()` patches snowflake-connector-python's cursor class for its duration, so it sees the
statements of every cursor, the connector's own included (the bind stage an executemany creates, and the PUT of
its binds): a recording of the product's cursor alone never shows them. `RecordingWarehouse` is the product's
Snowflake warehouse with its sessions recorded that way.

The rules take statements grouped per session, in the order sent (`by_session`), from a recording or from the
test server's statement log, and return the violations found (none: the statements keep them).
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Iterator, Mapping, Protocol, Sequence

import sqlglot
from snowflake.connector.cursor import SnowflakeCursorBase
from sqlglot import exp

from pendo_assets.warehouse.base import SessionTag
from pendo_assets.warehouse.bookkeeping import SCHEMA as BOOKKEEPING_SCHEMA
from pendo_assets.warehouse.snowflake import SnowflakeSession, SnowflakeWarehouse
from pendo_assets.warehouse.snowflake_sql import identifier
from pendo_assets_tests.snowflake_statements import (begin_of, ends_transaction, is_ddl, locked_table,
                                                     session_settings, used_schema)


@dataclass(frozen=True)
class RecordedStatement:
    """A statement as the connector sent it, on the session `session` (the connection's session_id). `call` and
    `called_sql`: the cursor method the program called (execute or executemany) and the statement it passed, which
    the connector's own statements (its bind stage, the PUT of the binds) carry too. `rows`: the rows an
    executemany was given."""

    session: int | None
    sql: str
    call: str
    called_sql: str
    rows: int | None = None


class StatementRecorder:
    def __init__(self, connection: Any = None, into: list[RecordedStatement] | None = None):
        self.connection = connection  # None: every connection's statements
        self.statements: list[RecordedStatement] = [] if into is None else into
        # Each session's parameters as its connection held them at its first recorded statement: what the client
        # sent at login, and what the server answered.
        self.session_parameters: dict[int | None, dict[str, Any]] = {}

    def _record(self, connection: Any, statement: RecordedStatement) -> None:
        if self.connection is None or connection is self.connection:
            self.session_parameters.setdefault(statement.session, dict(connection._session_parameters))
            self.statements.append(statement)


@dataclass(frozen=True)
class _Call:
    method: str
    sql: str
    rows: int | None


_recorders: list[StatementRecorder] = []
_recorders_lock = threading.Lock()
_originals: dict[str, Any] = {}
_calls = threading.local()  # per thread, the cursor calls under way, outermost first


@contextmanager
def record_statements(connection: Any = None, into: list[RecordedStatement] | None = None
                      ) -> Iterator[StatementRecorder]:
    """Record every statement sent by any cursor of `connection` (of any connection, without one) while the block
    runs, appended to `into` when given. Recordings may nest and overlap; the cursor class is restored when the
    last one ends."""
    recorder = StatementRecorder(connection, into)
    with _recorders_lock:
        if not _recorders:
            _patch_cursor_class()
        _recorders.append(recorder)
    try:
        yield recorder
    finally:
        with _recorders_lock:
            _recorders.remove(recorder)
            if not _recorders:
                for name, original in _originals.items():
                    setattr(SnowflakeCursorBase, name, original)
                _originals.clear()


def _patch_cursor_class() -> None:
    """Patch the base class, so every cursor class (SnowflakeCursor, DictCursor) is recorded. `execute` and
    `executemany` are what a program calls; `_execute_helper` is where every statement is sent from, the
    connector's own included (the bind upload's PUT does not pass through `execute`)."""
    for name in ("execute", "executemany", "_execute_helper"):
        _originals[name] = getattr(SnowflakeCursorBase, name)
    SnowflakeCursorBase.execute = _entered("execute", _originals["execute"])
    SnowflakeCursorBase.executemany = _entered("executemany", _originals["executemany"])
    SnowflakeCursorBase._execute_helper = _sending(_originals["_execute_helper"])


def _entered(method: str, original: Any) -> Any:
    @functools.wraps(original)
    def entered(cursor: Any, *args: Any, **kwargs: Any) -> Any:
        command = args[0] if args else kwargs.get("command")
        rows = (args[1] if len(args) > 1 else kwargs.get("seqparams")) if method == "executemany" else None
        stack = _calls.__dict__.setdefault("stack", [])
        stack.append(_Call(method, command, None if rows is None else len(rows)))
        try:
            return original(cursor, *args, **kwargs)
        finally:
            stack.pop()

    return entered


def _sending(original: Any) -> Any:
    @functools.wraps(original)
    def sending(cursor: Any, *args: Any, **kwargs: Any) -> Any:
        query = args[0] if args else kwargs["query"]
        call = (_calls.__dict__.get("stack") or [_Call("_execute_helper", query, None)])[0]
        statement = RecordedStatement(cursor.connection.session_id, query, call.method, call.sql, call.rows)
        for recorder in list(_recorders):
            recorder._record(cursor.connection, statement)
        return original(cursor, *args, **kwargs)

    return sending


class RecordingWarehouse(SnowflakeWarehouse):
    """The product's Snowflake warehouse, unchanged but for every statement its sessions' connections send,
    the connector's own included, appended to `recorded` (texts: `statements`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.recorded: list[RecordedStatement] = []

    @property
    def statements(self) -> list[str]:
        return [statement.sql for statement in self.recorded]

    @contextmanager
    def session(self, tag: SessionTag | None = None) -> Iterator[SnowflakeSession]:
        with super().session(tag) as session, record_statements(session.conn, into=self.recorded):
            yield session


class _SessionStatement(Protocol):
    session: Any
    sql: str


def by_session(statements: Iterable[_SessionStatement]) -> dict[Any, list[str]]:
    """Statement texts grouped per session, in order: from a recording or from the test server's log."""
    grouped: dict[Any, list[str]] = defaultdict(list)
    for statement in statements:
        grouped[statement.session].append(statement.sql)
    return dict(grouped)


def ddl_inside_transactions(statements_by_session: Mapping[Hashable, Sequence[str]]) -> list[str]:
    """Rule: no DDL between BEGIN and COMMIT or ROLLBACK, the connector's own (its bind stage) included: Snowflake
    commits the open transaction before any DDL runs."""
    return [f"session {session}, statement {number} ({_excerpt(sql)}): DDL inside the transaction begun by "
            f"statement {begun}; Snowflake commits the transaction before it runs"
            for session, statements in statements_by_session.items()
            for number, sql, begun in _in_transactions(statements) if begun is not None and is_ddl(sql)]


def bookkeeping_locks_inside_transactions(statements_by_session: Mapping[Hashable, Sequence[str]],
                                          schema: str = BOOKKEEPING_SCHEMA) -> list[str]:
    """Rule: no DELETE, UPDATE or MERGE of a table in `schema` (the bookkeeping every app's loads share) inside a
    transaction: such a write locks the table until COMMIT, and every other app's load waits behind it. The
    table's schema is read from its qualified name, or from the session's last USE SCHEMA."""
    violations = []
    for session, statements in statements_by_session.items():
        current_schema = None
        for number, sql, begun in _in_transactions(statements):
            current_schema = used_schema(sql) or current_schema
            table = locked_table(sql)
            if begun is None or table is None:
                continue
            table_schema = table[-2] if len(table) > 1 else current_schema
            if table_schema is not None and table_schema.upper() == schema.upper():
                violations.append(f"session {session}, statement {number} ({_excerpt(sql)}): locks {'.'.join(table)} "
                                  f"inside the transaction begun by statement {begun}; every other load writing "
                                  f"{schema} waits until it ends")
    return violations


def transactions_without_lock_timeout(statements_by_session: Mapping[Hashable, Sequence[str]],
                                      session_parameters: Mapping[Hashable, Mapping[str, Any]]) -> list[str]:
    """Rule: a session that opens a transaction has LOCK_TIMEOUT set, at login (`session_parameters`) or by
    ALTER SESSION before its BEGIN: Snowflake's default makes a statement wait 12 hours for a lock a killed load
    left behind."""
    violations = []
    for session, statements in statements_by_session.items():
        has_timeout = any(name.upper() == "LOCK_TIMEOUT" for name in session_parameters.get(session, {}))
        for number, sql in enumerate(statements, 1):
            settings = session_settings(sql)
            if settings is not None:
                changed, unset = settings
                has_timeout = "LOCK_TIMEOUT" in changed or (has_timeout and "LOCK_TIMEOUT" not in unset)
            elif begin_of(sql) is not None and not has_timeout:
                violations.append(f"session {session}, statement {number} ({_excerpt(sql)}): opens a transaction "
                                  "without LOCK_TIMEOUT set in the session")
                break
    return violations


def transaction_problems(statements_by_session: Mapping[Hashable, Sequence[str]],
                         session_parameters: Mapping[Hashable, Mapping[str, Any]]) -> list[str]:
    """Every rule above, at once."""
    return [*ddl_inside_transactions(statements_by_session),
            *bookkeeping_locks_inside_transactions(statements_by_session),
            *transactions_without_lock_timeout(statements_by_session, session_parameters)]


def _in_transactions(statements: Sequence[str]) -> Iterator[tuple[int, str, int | None]]:
    """Each statement, numbered from 1, with the number of the BEGIN whose transaction it runs in (None: none).
    A BEGIN inside a transaction is ignored, as Snowflake ignores it."""
    begun = None
    for number, sql in enumerate(statements, 1):
        if begin_of(sql) is not None:
            begun = begun or number
            yield number, sql, None
        elif ends_transaction(sql):
            yield number, sql, begun
            begun = None
        else:
            yield number, sql, begun


def _excerpt(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 60 else text[:57] + "..."


def copies(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("COPY")]


def copy_files(statement: str) -> list[str]:
    """The FILES = (...) paths of a COPY, as sqlglot reads them."""
    copy = sqlglot.parse_one(statement, read="snowflake")
    (files,) = [option.expression for option in copy.args["params"] if option.this.name.upper() == "FILES"]
    return [literal.this for literal in (files.expressions if isinstance(files, exp.Tuple) else [files.this])]


def server_side_problems(statements: list[str], stage: str) -> list[str]:
    """How a day's statements stray from the server-side path: a PUT or temporary stage (event rows passing
    through this process), or a COPY that is not a transformation from `stage` naming its FILES."""
    source = f"FROM @{'.'.join(identifier(part) for part in stage.split('.'))})"
    problems = [f"staged: {s}" for s in statements if s.lstrip().upper().startswith(("PUT", "CREATE TEMPORARY STAGE"))]
    problems += [f"not a transformation COPY from {stage} with FILES: {s}" for s in copies(statements)
                 if not (s.startswith("COPY INTO ") and " FROM (SELECT " in s and source in s and " FILES = (" in s)]
    return problems
