"""Which Snowflake database to load into and how to log in, from a snowflake:// URL and the environment.

The URL names the place: snowflake://<user>@<account>/<database>?warehouse=<wh>&role=<role>, plus host, port
and protocol for an endpoint of one's own (an emulator, a proxy). Secrets never go in the URL; they come from
environment variables, which the Dagster resource reads only when a run connects.

Parsing loads neither DuckDB nor the Snowflake libraries, so settings can check a URL cheaply; `resource()` and
`connect()` import dagster-snowflake and the connector when called.
"""

from __future__ import annotations

import os
import re
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pendo_assets.errors import UserError

if TYPE_CHECKING:
    from dagster_snowflake import SnowflakeResource
    from snowflake.connector import SnowflakeConnection

PASSWORD_VARIABLE = "SNOWFLAKE_PASSWORD"
PRIVATE_KEY_VARIABLE = "SNOWFLAKE_PRIVATE_KEY"
PRIVATE_KEY_PATH_VARIABLE = "SNOWFLAKE_PRIVATE_KEY_PATH"
PASSPHRASE_VARIABLE = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
SECRET_VARIABLES = (PASSWORD_VARIABLE, PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE, PASSPHRASE_VARIABLE)
# The SnowflakeResource field each login secret's variable fills.
RESOURCE_SECRET_FIELDS = {PASSWORD_VARIABLE: "password", PRIVATE_KEY_VARIABLE: "private_key",
                          PRIVATE_KEY_PATH_VARIABLE: "private_key_path"}
QUERY_PARAMETERS = ("warehouse", "role", "host", "port", "protocol", "login_timeout", "network_timeout",
                    "lock_timeout")
PROTOCOLS = ("http", "https")
URL_EXAMPLE = "snowflake://PENDO_LOADER@myorg-myaccount/PENDO?warehouse=LOADING&role=PENDO_LOADER"
# What the connector accepts as an account: letters, digits, _ and -, with an optional .region.cloud suffix.
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
SNOWFLAKE_DOMAINS = (".snowflakecomputing.com", ".snowflakecomputing.cn")
# Login retries give up after a minute. network_timeout ends the retries of every other request, and the
# connector then also cancels a statement still running, so it must outlast the longest COPY of a day.
LOGIN_TIMEOUT_SECONDS = 60
NETWORK_TIMEOUT_SECONDS = 3600
# How long a statement waits for a table another transaction holds (Snowflake's default is 12 hours). Snowflake
# aborts a transaction its dead session left open once it has blocked another for 5 minutes idle, so a load
# waiting behind a killed one goes on within this; a load blocked by a live one fails, naming it.
LOCK_TIMEOUT_SECONDS = 600
DEFAULT_TIMEOUTS = {"login_timeout": LOGIN_TIMEOUT_SECONDS, "network_timeout": NETWORK_TIMEOUT_SECONDS,
                    "lock_timeout": LOCK_TIMEOUT_SECONDS}
# Every session sets these at login, so that no account or user default changes what a load does: times in UTC
# and without a zone, bound dates and timestamps read in the one format `_bindable` writes, an UPDATE that could
# pick one of several source rows an error (not a silent choice), and the product named in QUERY_TAG.
SESSION_PARAMETERS = {
    "TIMEZONE": "UTC",
    "TIMESTAMP_TYPE_MAPPING": "TIMESTAMP_NTZ",
    "DATE_INPUT_FORMAT": "YYYY-MM-DD",
    "TIMESTAMP_INPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF",
    "ERROR_ON_NONDETERMINISTIC_UPDATE": True,
    "QUERY_TAG": "pendo-datasync",
}


@dataclass(frozen=True)
class SnowflakeTarget:
    """A Snowflake database to load into, and the environment variables that hold the login secret.

    No secret is held here: `secret_variable` names the variable with the password, the private key or the
    key's file path, and `passphrase_variable` the one with the key's passphrase, if any.
    """

    account: str
    user: str
    database: str
    secret_variable: str
    passphrase_variable: str | None = None
    warehouse: str | None = None
    role: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    login_timeout_seconds: int = LOGIN_TIMEOUT_SECONDS
    network_timeout_seconds: int = NETWORK_TIMEOUT_SECONDS
    lock_timeout_seconds: int = LOCK_TIMEOUT_SECONDS

    @property
    def session_parameters(self) -> dict[str, object]:
        """What every session of this target sets at login."""
        parameters: dict[str, object] = {**SESSION_PARAMETERS, "LOCK_TIMEOUT": self.lock_timeout_seconds}
        if self.host:
            # An endpoint of one's own (an emulator, a proxy) gets no telemetry meant for Snowflake's servers.
            parameters["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] = False
        return parameters

    @property
    def uses_key_pair(self) -> bool:
        return self.secret_variable != PASSWORD_VARIABLE

    def describe(self) -> str:
        """The target as a URL safe for logs; it is also one `parse_snowflake_url` reads back."""
        query = {name: getattr(self, name) for name in QUERY_PARAMETERS[:5] if getattr(self, name) is not None}
        query.update({name: getattr(self, f"{name}_seconds") for name in DEFAULT_TIMEOUTS
                      if getattr(self, f"{name}_seconds") != DEFAULT_TIMEOUTS[name]})
        return (f"snowflake://{quote(self.user, safe='')}@{self.account}/{quote(self.database, safe='')}"
                + (f"?{urlencode(query)}" if query else ""))

    def resource(self) -> SnowflakeResource:
        """A Dagster resource for this target: its secret fields are dg.EnvVar, resolved only when a run starts."""
        import dagster as dg
        from dagster_snowflake import SnowflakeResource

        secrets = {RESOURCE_SECRET_FIELDS[self.secret_variable]: dg.EnvVar(self.secret_variable)}
        if self.passphrase_variable:
            secrets["private_key_password"] = dg.EnvVar(self.passphrase_variable)
        endpoint: dict[str, object] = {name: value for name, value in
                                       (("host", self.host), ("port", self.port), ("protocol", self.protocol))
                                       if value is not None}
        return SnowflakeResource(
            account=self.account, user=self.user, database=self.database, warehouse=self.warehouse,
            role=self.role, autocommit=True,
            # qmark binds values on the server; the default pyformat pastes them into the SQL text.
            paramstyle="qmark",
            login_timeout=self.login_timeout_seconds, network_timeout=self.network_timeout_seconds,
            additional_snowflake_connection_args={**endpoint, "session_parameters": self.session_parameters},
            **secrets)

    @contextmanager
    def connect(self, resource: SnowflakeResource | None = None) -> Iterator[SnowflakeConnection]:
        """An autocommit connection made by `resource` (one a Dagster run resolved, built by `resource()`), or by
        `resource()` resolved here; closed when the block ends. If the block raises, any transaction it left open
        is rolled back first.

        Raises UserError, naming the account (or host) and the database but never a secret, when Snowflake
        cannot be reached, the key cannot be read, the login is refused, or the role cannot use the database.
        """
        from snowflake.connector.errors import Error as ConnectorError

        with ExitStack() as stack:
            try:
                # Resolved, the resource holds the secrets themselves (its repr shows them), so it stays here.
                # The _cm form disposes of the throwaway Dagster instance it builds, instead of leaving it to GC.
                resolved = resource or stack.enter_context(self.resource().process_config_and_initialize_cm())
                connection = stack.enter_context(resolved.get_connection())
            except ConnectorError as error:
                raise UserError(self._connection_failure(error)) from error
            except (ValueError, TypeError, OSError) as error:
                if not self.uses_key_pair:
                    raise
                raise UserError(self._unreadable_key(error)) from error
            try:
                self._check_database(connection)
                yield connection
            except BaseException:
                # get_connection neither rolls back nor closes when its block raises.
                with suppress(ConnectorError):
                    connection.rollback()
                connection.close()
                raise

    def _check_database(self, connection: SnowflakeConnection) -> None:
        """Snowflake logs in even when the database is missing or the role may not use it; the session then has
        no current database (NULL), and the first statement would fail obscurely."""
        with closing(connection.cursor()) as cursor:
            (current,) = cursor.execute("SELECT CURRENT_DATABASE()").fetchone()
        if (current or "").upper() != self.database.upper():
            role = f"role {self.role}" if self.role else f"{self.user}'s default role"
            raise UserError(f"Snowflake database {self.database} does not exist in {self._where()}, or {role} "
                            f"cannot use it; an admin must create it and grant USAGE on it to {role}")

    def _where(self) -> str:
        if not self.host:
            return f"account {self.account}"
        return f"account {self.account} at {self.protocol or 'https'}://{self.host}:{self.port or 443}"

    def _connection_failure(self, error: Exception) -> str:
        secret = "private key" if self.uses_key_pair else "password"
        endpoint = ", host and port" if self.host else ""
        return (f"cannot connect to Snowflake {self._where()} as {self.user} for database {self.database}: "
                f"{_first_line_without_secrets(error)}\ncheck the account{endpoint} in the warehouse URL, the "
                f"network, and that {self.secret_variable} holds {self.user}'s {secret}")

    def _unreadable_key(self, error: Exception) -> str:
        return (f"cannot read the private key in {self.secret_variable}: {_first_line_without_secrets(error)}\n"
                f"it must be a PKCS#8 PEM key (or its base64); set {PASSPHRASE_VARIABLE} if the key is encrypted, "
                f"and only then")


def parse_snowflake_url(url: str) -> SnowflakeTarget:
    """The target a snowflake:// warehouse URL names, with its login secret's variables from the environment.

    The secret: SNOWFLAKE_PRIVATE_KEY (PEM text, or its base64) or SNOWFLAKE_PRIVATE_KEY_PATH, with
    SNOWFLAKE_PRIVATE_KEY_PASSPHRASE if the key is encrypted; else SNOWFLAKE_PASSWORD. When a key and a password
    are both set, the key is used: key-pair auth is what Pendo's own Snowflake sync uses. Messages name the URL's
    parts, never its text, which may hold a secret.
    """
    scheme, separator, rest = url.partition("://")
    if scheme != "snowflake" or not separator:
        raise UserError(f"a Snowflake warehouse URL starts with snowflake://, like {URL_EXAMPLE}")
    if ":" in rest.rpartition("@")[0]:
        raise UserError(f"the Snowflake warehouse URL must not hold a password; remove the ':' and what follows "
                        f"the user, and set {PASSWORD_VARIABLE} (or {PRIVATE_KEY_VARIABLE}) instead")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UserError(f"the Snowflake warehouse URL is not a valid URL; write it like {URL_EXAMPLE}") from None
    user, _, account = parts.netloc.rpartition("@")
    if not user or not account:
        raise UserError(f"the Snowflake warehouse URL needs a user and an account, like {URL_EXAMPLE}")
    if account.lower().endswith(SNOWFLAKE_DOMAINS):
        raise UserError("the Snowflake warehouse URL needs the account identifier (like myorg-myaccount), not "
                        "its host name ending in .snowflakecomputing.com")
    if not ACCOUNT_PATTERN.fullmatch(account):
        raise UserError("the account in the Snowflake warehouse URL must be an account identifier, like "
                        "myorg-myaccount or xy12345.us-east-1; give another endpoint with ?host=...&port=...")
    databases = [segment for segment in parts.path.split("/") if segment]
    if len(databases) != 1 or parts.fragment:
        raise UserError(f"the Snowflake warehouse URL must name one database as its path, like {URL_EXAMPLE}")
    options = _query_options(parts.query)
    secret_variable, passphrase_variable = _secret_variables()
    return SnowflakeTarget(account=account, user=unquote(user), database=unquote(databases[0]),
                           secret_variable=secret_variable, passphrase_variable=passphrase_variable,
                           warehouse=options.get("warehouse"), role=options.get("role"), host=options.get("host"),
                           port=_port(options["port"]) if "port" in options else None,
                           protocol=_protocol(options["protocol"]) if "protocol" in options else None,
                           **{f"{name}_seconds": _seconds(name, options[name])
                              for name in DEFAULT_TIMEOUTS if name in options})


def _query_options(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in QUERY_PARAMETERS:
            raise UserError(f"the Snowflake warehouse URL has an unknown parameter {name!r}; it takes "
                            f"{', '.join(QUERY_PARAMETERS)}, and secrets only from SNOWFLAKE_* variables")
        if name in options:
            raise UserError(f"the Snowflake warehouse URL gives {name}= twice; give it once")
        if not value.strip():
            raise UserError(f"{name}= in the Snowflake warehouse URL is empty; give a value or leave it out")
        options[name] = value.strip()
    return options


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UserError("port= in the Snowflake warehouse URL must be a whole number from 1 to 65535")
    return int(text)


def _seconds(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{name}= in the Snowflake warehouse URL must be a whole number of seconds, at least 1")
    return int(text)


def _protocol(text: str) -> str:
    if text.lower() not in PROTOCOLS:
        raise UserError("protocol= in the Snowflake warehouse URL must be http or https")
    return text.lower()


def _secret_variables() -> tuple[str, str | None]:
    """The variable holding the login secret, and the one holding the key's passphrase (None if unused)."""
    present = {name for name in SECRET_VARIABLES if os.environ.get(name, "").strip()}
    if {PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE} <= present:
        raise UserError(f"both {PRIVATE_KEY_VARIABLE} and {PRIVATE_KEY_PATH_VARIABLE} are set; unset one, so "
                        "that one key logs in to Snowflake")
    for key_variable in (PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE):
        if key_variable in present:
            return key_variable, PASSPHRASE_VARIABLE if PASSPHRASE_VARIABLE in present else None
    if PASSWORD_VARIABLE in present:
        return PASSWORD_VARIABLE, None
    raise UserError(f"no Snowflake login secret is set; set {PRIVATE_KEY_VARIABLE} (PEM text or its base64) or "
                    f"{PRIVATE_KEY_PATH_VARIABLE} for key-pair auth, or {PASSWORD_VARIABLE}")


def _first_line_without_secrets(error: Exception) -> str:
    """The error's first line, with the value of any secret variable masked, should a library have echoed one."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name, "").strip()
        if secret:
            text = text.replace(secret, "***")
    return text
