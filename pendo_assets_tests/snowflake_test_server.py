"""The Snowflake stand-in the tests run against: fakesnow's HTTP server, wrapped where fakesnow hides what a real
account does. Run as its own process (snowflake_server.py starts and stops it):

    python -m pendo_assets_tests.snowflake_test_server --host 127.0.0.1 --port 8123 \\
        --statement-log statements.jsonl --array-binding-threshold 100

fakesnow's routes answer everything but what is wrapped here:
- login answers CLIENT_STAGE_ARRAY_BINDING_THRESHOLD as configured (fakesnow: 0; real accounts about 65,280),
  echoes the session parameters the client sent as accepted, and gives each session a numeric sessionId and a
  master token (the connector logs out only with one);
- the connector's bind stage (`create or replace TEMP stage SYSTEMBIND`, which an executemany at or above
  the threshold runs first) is refused with a Snowflake-style error, so the connector binds inline instead: fakesnow
  cannot serve staged binds, and the upload would hang;
- transactions as Snowflake keeps them (https://docs.snowflake.com/en/sql-reference/transactions): BEGIN [NAME x]
  and START TRANSACTION [NAME x] open one (another BEGIN while one is open is ignored), COMMIT and ROLLBACK end it,
  DDL commits it first and then runs on its own (fakesnow runs a CREATE TABLE or ALTER inside it, for ROLLBACK
  to undo, and answers a CREATE STAGE there with HTTP 500); CURRENT_TRANSACTION(), SHOW TRANSACTIONS and
  SYSTEM$ABORT_TRANSACTION answer from that record. A client
  that dies leaves its session, and its transaction, open; a client that logs out has its transaction rolled back;
- ALTER SESSION SET/UNSET of a parameter fakesnow does not know (LOCK_TIMEOUT, QUERY_TAG, ...; fakesnow refuses
  them as not implemented) is accepted and logged, not applied;
- every login, statement and logout is appended to the statement log (snowflake_statements.py's records).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import itertools
import json
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fakesnow import statement_type
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pendo_assets_tests.snowflake_statements import (LoggedLogin, LoggedLogout, LoggedStatement, begin_of,
                                                     current_transaction_column, ends_transaction, is_bind_stage,
                                                     is_ddl, session_settings, shows_transactions,
                                                     transaction_to_abort)

THRESHOLD_PARAMETER = "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD"
# ALTER SESSION parameters fakesnow itself acts on; any other is accepted and recorded here.
FAKESNOW_SESSION_PARAMETERS = frozenset({"AUTOCOMMIT", "QUOTED_IDENTIFIERS_IGNORE_CASE"})
# A role lacking CREATE STAGE on the session's schema gets this from Snowflake; the connector then binds inline.
REFUSED_CODE, REFUSED_STATE = "003001", "42501"
REFUSED_MESSAGE = ("SQL access control error:\nInsufficient privileges to operate on schema: this test server "
                   "refuses the connector's bind stage, since fakesnow cannot serve staged binds")
STATUS_SUCCESS = "Statement executed successfully."
# The module, by name: `fakesnow.server` is also a function fakesnow's package exports.
fakesnow_server = importlib.import_module("fakesnow.server")
# How Snowflake describes the columns these answers hold, as its JSON result format gives them.
TEXT = {"type": "text", "byteLength": 16777216, "length": 16777216, "precision": None, "scale": None}
NUMBER = {"type": "fixed", "byteLength": None, "length": None, "precision": 38, "scale": 0}
TIMESTAMP_LTZ = {"type": "timestamp_ltz", "byteLength": None, "length": None, "precision": 0, "scale": 9}
SHOW_TRANSACTIONS_COLUMNS = [("id", NUMBER), ("user", TEXT), ("session", NUMBER), ("name", TEXT),
                             ("started_on", TIMESTAMP_LTZ), ("state", TEXT), ("scope", NUMBER)]


@dataclass
class Transaction:
    id: int  # Snowflake's id is the transaction's start time in epoch milliseconds
    name: str
    started_on: float  # epoch seconds


@dataclass
class Session:
    id: int
    token: str
    user: str | None
    transaction: Transaction | None = None


class StatementLog:
    """JSON lines, appended and flushed before the client gets its answer, so a test reads what it caused."""

    def __init__(self, path: Path):
        self.handle = path.open("a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, record: Any) -> None:
        line = json.dumps(asdict(record), default=str)
        with self.lock:
            self.handle.write(line + "\n")
            self.handle.flush()


class SnowflakeTestServer:
    def __init__(self, array_binding_threshold: int, log: StatementLog):
        self.array_binding_threshold = array_binding_threshold
        self.log = log
        self.sessions: dict[str, Session] = {}  # by fakesnow's session token
        self.session_ids = itertools.count(1)
        self.last_transaction_id = 0

    def app(self) -> Starlette:
        wrapped = {"/session/v1/login-request": self.login, "/queries/v1/query-request": self.query,
                   "/session": self.session_request}
        return Starlette(routes=[Route(route.path, wrapped.get(route.path, route.endpoint), methods=route.methods)
                                 for route in fakesnow_server.routes])

    async def login(self, request: Request) -> Response:
        data = json.loads(await _body(request))["data"]
        response = await fakesnow_server.login_request(request)
        answer = json.loads(response.body)
        if not answer.get("success"):
            return response
        sent = dict(data.get("SESSION_PARAMETERS") or {})
        session = Session(next(self.session_ids), answer["data"]["token"], data.get("LOGIN_NAME"))
        self.sessions[session.token] = session
        # As Snowflake answers the parameters it accepted: the client's own values stand, the threshold included.
        parameters = {p["name"]: p["value"] for p in answer["data"]["parameters"]}
        parameters[THRESHOLD_PARAMETER] = self.array_binding_threshold
        parameters.update(sent)
        answer["data"]["parameters"] = [{"name": name, "value": value} for name, value in parameters.items()]
        answer["data"]["sessionId"] = session.id
        # Without a master token the connector never logs out (network.py delete_session), so fakesnow would keep
        # every session, and its transaction, until it stops.
        answer["data"]["masterToken"] = secrets.token_urlsafe(32)
        self.log.write(LoggedLogin(session.id, session.user, sent))
        return JSONResponse(answer)

    async def session_request(self, request: Request) -> Response:
        """fakesnow forgets a session at logout; Snowflake also rolls back the transaction it left open."""
        session = self.sessions.get(_token(request))
        if session is None or not request.query_params.get("delete"):
            return await fakesnow_server.session(request)
        rolled_back = session.transaction.id if session.transaction else None
        if rolled_back is not None:
            await self._run(session, "ROLLBACK")
        del self.sessions[session.token]
        self.log.write(LoggedLogout(session.id, rolled_back))
        return await fakesnow_server.session(request)

    async def query(self, request: Request) -> Response:
        session = self.sessions.get(_token(request))
        if session is None:  # fakesnow answers an unknown token
            return await fakesnow_server.query_request(request)
        body = json.loads(await _body(request))
        sql = body["sqlText"]
        open_transaction = session.transaction.id if session.transaction else None
        response, outcome = None, {}
        try:
            if body.get("describeOnly"):
                response = await fakesnow_server.query_request(request)
            else:
                response, outcome = await self._answer(request, body, session, sql)
        finally:  # logged even when answering fails (HTTP 500)
            self.log.write(LoggedStatement(session.id, sql, open_transaction,
                                           response is not None and _succeeded(response),
                                           bound_rows=_bound_rows(body), **outcome))
        return response

    async def _answer(self, request: Request, body: dict, session: Session, sql: str
                      ) -> tuple[Response, dict[str, Any]]:
        """The answer to one statement, and what the log should say it did beyond running."""
        if is_bind_stage(sql):
            return _error(REFUSED_CODE, REFUSED_STATE, REFUSED_MESSAGE), {"refused": True}
        begin = begin_of(sql)
        if begin is not None:
            if session.transaction is not None:  # Snowflake ignores a BEGIN inside a transaction
                return _status(STATUS_SUCCESS), {}
            # fakesnow cannot parse a transaction's name, so it gets a plain BEGIN.
            response = await fakesnow_server.query_request(_with_sql(request, body, "BEGIN"))
            if _succeeded(response):
                session.transaction = Transaction(self._new_transaction_id(), begin.name or str(uuid.uuid4()),
                                                  time.time())
            return response, {}
        if ends_transaction(sql):
            response = await fakesnow_server.query_request(request)
            if _succeeded(response):
                session.transaction = None
            return response, {}
        if is_ddl(sql) and session.transaction is not None:
            committed = session.transaction.id
            await self._run(session, "COMMIT")
            session.transaction = None
            return await fakesnow_server.query_request(request), {"committed": committed}
        column = current_transaction_column(sql)
        if column is not None:
            return _rows([(column, TEXT)], [[str(session.transaction.id) if session.transaction else None]]), {}
        in_account = shows_transactions(sql)
        if in_account is not None:
            return _rows(SHOW_TRANSACTIONS_COLUMNS, self._transactions(session, in_account),
                         statement_type.SHOW), {}
        bindings = body.get("bindings") or {}
        to_abort = transaction_to_abort(sql, [bindings[str(n)]["value"] for n in range(1, len(bindings) + 1)])
        if to_abort is not None:
            transaction_id, column = to_abort
            aborted = await self._abort(transaction_id)
            return _rows([(column, TEXT)], [[f"Aborted transaction id: {transaction_id}"]]), {"aborted": aborted}
        settings = session_settings(sql)
        if settings is not None and not FAKESNOW_SESSION_PARAMETERS & {*settings[0], *settings[1]}:
            return _status(STATUS_SUCCESS), {"settings": settings[0]}
        return await fakesnow_server.query_request(request), {}

    def _new_transaction_id(self) -> int:
        self.last_transaction_id = max(time.time_ns() // 1_000_000, self.last_transaction_id + 1)
        return self.last_transaction_id

    def _transactions(self, asking: Session, in_account: bool) -> list[list[str | None]]:
        """SHOW TRANSACTIONS' rows: the asking user's open transactions, or every user's IN ACCOUNT."""
        return [[str(t.id), s.user, str(s.id), t.name, f"{t.started_on:.9f}", "running", "0"]
                for s in self.sessions.values() if (t := s.transaction) is not None
                and (in_account or s.user == asking.user)]

    async def _abort(self, transaction_id: int) -> int | None:
        """Roll back the running transaction with this id, whichever session holds it; Snowflake leaves a
        transaction that has ended as it is."""
        for session in self.sessions.values():
            if session.transaction is not None and session.transaction.id == transaction_id:
                await self._run(session, "ROLLBACK")
                session.transaction = None
                return transaction_id
        return None

    async def _run(self, session: Session, sql: str) -> None:
        """Run a statement on the session's fakesnow connection, as Snowflake does on the session's behalf."""
        connection = fakesnow_server.sessions[session.token]
        await run_in_threadpool(connection.cursor().execute, sql)


async def _body(request: Request) -> bytes:
    body = await request.body()  # Starlette keeps it, so fakesnow's handler reads it again
    return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body


def _token(request: Request) -> str | None:
    authorization = request.headers.get("Authorization")  # Snowflake Token="..."
    return authorization[17:-1] if authorization else None


def _with_sql(request: Request, body: dict, sql: str) -> Request:
    """The same request, carrying `sql` instead of its statement."""
    encoded = json.dumps({**body, "sqlText": sql}).encode()
    headers = [(name, value) for name, value in request.scope["headers"]
               if name.lower() not in (b"content-encoding", b"content-length")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": encoded, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


def _succeeded(response: Response) -> bool:
    return response.status_code == 200 and bool(json.loads(response.body).get("success"))


def _bound_rows(body: dict) -> int | None:
    values = [binding.get("value") for binding in (body.get("bindings") or {}).values()]
    return len(values[0]) if values and isinstance(values[0], list) else None


def _rows(columns: list[tuple[str, dict]], rows: list[list[str | None]],
          type_id: int = statement_type.SELECT) -> JSONResponse:
    """A result in Snowflake's JSON format: every value as text, as Snowflake sends it."""
    rowtype = [{"name": name, "database": "", "schema": "", "table": "", "nullable": True, "collation": None,
                **kind} for name, kind in columns]
    return JSONResponse({"data": {"rowtype": rowtype, "rowset": rows, "total": len(rows), "returned": len(rows),
                                  "queryId": str(uuid.uuid4()), "statementTypeId": type_id,
                                  "queryResultFormat": "json"},
                         "success": True})


def _status(message: str) -> JSONResponse:
    return _rows([("status", TEXT)], [[message]])


def _error(code: str, state: str, message: str) -> JSONResponse:
    return JSONResponse({"data": {"errorCode": code, "sqlState": state}, "code": code, "message": message,
                         "success": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--statement-log", type=Path, required=True, help="JSON lines file, appended to")
    parser.add_argument("--array-binding-threshold", type=int, default=0,
                        help="CLIENT_STAGE_ARRAY_BINDING_THRESHOLD the login answers; 0 keeps every bind inline")
    options = parser.parse_args()
    server = SnowflakeTestServer(options.array_binding_threshold, StatementLog(options.statement_log))
    # No access log: a test run sends tens of thousands of statements, and the statement log has them.
    uvicorn.run(server.app(), host=options.host, port=options.port, access_log=False, timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
