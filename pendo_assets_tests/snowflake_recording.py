"""The product's Snowflake warehouse with every statement it runs recorded, and readers of the recorded COPYs:
for the tests that hold a load's statements to Snowflake's rules (`snowflake_sql.check_statements`), on fakesnow
or on a real account."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import sqlglot
from sqlglot import exp

from pendo_assets.warehouse.snowflake import SnowflakeSession, SnowflakeWarehouse
from pendo_assets.warehouse.snowflake_sql import identifier


class RecordingCursor:
    """A connector cursor that keeps the text of every statement it runs, in order."""

    def __init__(self, cursor: Any, statements: list[str]):
        self.cursor, self.statements = cursor, statements

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> "RecordingCursor":
        self.statements.append(sql)
        self.cursor.execute(sql, *args, **kwargs)
        return self

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> "RecordingCursor":
        self.statements.append(sql)
        self.cursor.executemany(sql, *args, **kwargs)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


class RecordingWarehouse(SnowflakeWarehouse):
    """The product's Snowflake warehouse, unchanged but for every session's statements appended to `statements`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.statements: list[str] = []

    @contextmanager
    def session(self) -> Iterator[SnowflakeSession]:
        with super().session() as session:
            session.cursor = RecordingCursor(session.cursor, self.statements)
            yield session


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
