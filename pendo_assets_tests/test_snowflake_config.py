"""A snowflake:// warehouse URL and the SNOWFLAKE_* variables become a target: parsed strictly, with plain messages
that never hold a secret, a Dagster resource holding only variable names, and connections to a real fakesnow
server (see snowflake_server.py)."""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import dagster as dg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pendo_assets.errors import UserError
from pendo_assets.warehouse.snowflake_config import (
    LOCK_TIMEOUT_SECONDS, LOGIN_TIMEOUT_SECONDS, NETWORK_TIMEOUT_SECONDS, PASSPHRASE_VARIABLE, PASSWORD_VARIABLE,
    PRIVATE_KEY_PATH_VARIABLE, PRIVATE_KEY_VARIABLE, SECRET_VARIABLES, SESSION_PARAMETERS, SnowflakeTarget,
    parse_snowflake_url)
from pendo_assets_tests.servers import free_port
from pendo_assets_tests.snowflake_server import PASSWORD, FakeSnowflakeServer

URL = "snowflake://PENDO_LOADER@myorg-myaccount/PENDO"
SECRET = "hunter2-s3cret"
PASSPHRASE = "key-passphrase-5d1e"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the secrets it means; none leak in from the developer's shell."""
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def assert_plain(message: str, *secrets: str) -> None:
    assert len(message.splitlines()) <= 2
    for secret in (SECRET, PASSWORD, PASSPHRASE, *secrets):
        assert secret not in message


# Parsing


def test_a_minimal_url_names_the_user_account_and_database(password: None) -> None:
    target = parse_snowflake_url(URL)
    assert (target.user, target.account, target.database) == ("PENDO_LOADER", "myorg-myaccount", "PENDO")
    assert (target.warehouse, target.role, target.host, target.port, target.protocol) == (None,) * 5
    assert (target.secret_variable, target.passphrase_variable) == (PASSWORD_VARIABLE, None)
    assert (target.login_timeout_seconds, target.network_timeout_seconds) == (LOGIN_TIMEOUT_SECONDS,
                                                                             NETWORK_TIMEOUT_SECONDS)


def test_timeouts_can_be_shortened_in_the_url_and_read_back(password: None) -> None:
    target = parse_snowflake_url(f"{URL}?login_timeout=5&network_timeout=30&lock_timeout=45")
    assert (target.login_timeout_seconds, target.network_timeout_seconds, target.lock_timeout_seconds) == (5, 30, 45)
    assert target.session_parameters["LOCK_TIMEOUT"] == 45
    assert parse_snowflake_url(target.describe()) == target
    assert parse_snowflake_url(URL).lock_timeout_seconds == LOCK_TIMEOUT_SECONDS
    for name in ("network_timeout", "lock_timeout"):
        with pytest.raises(UserError, match=f"{name}= in the Snowflake warehouse URL must be a whole number"):
            parse_snowflake_url(f"{URL}?{name}=0")


def test_every_parameter_is_read(password: None) -> None:
    target = parse_snowflake_url("snowflake://jane%40corp.com@xy12345.us-east-1/PENDO_RAW?warehouse=LOADING"
                                 "&role=PENDO_LOADER&host=127.0.0.1&port=8123&protocol=HTTP")
    assert target == SnowflakeTarget(account="xy12345.us-east-1", user="jane@corp.com", database="PENDO_RAW",
                                     secret_variable=PASSWORD_VARIABLE, warehouse="LOADING", role="PENDO_LOADER",
                                     host="127.0.0.1", port=8123, protocol="http")


@pytest.mark.parametrize("url", [URL, "snowflake://jane%40corp.com@xy12345.us-east-1/PENDO?warehouse=WH&role=R"
                                      "&host=sf.example.com&port=443&protocol=https"])
def test_describe_reads_back_as_the_same_target(password: None, url: str) -> None:
    target = parse_snowflake_url(url)
    assert parse_snowflake_url(target.describe()) == target


@pytest.mark.parametrize(("url", "expected"), [
    ("https://PENDO_LOADER@myorg-myaccount/PENDO", "starts with snowflake://"),
    ("snowflake://myorg-myaccount/PENDO", "needs a user and an account"),
    ("snowflake://PENDO_LOADER@/PENDO", "needs a user and an account"),
    ("snowflake://PENDO_LOADER@myorg-myaccount", "must name one database"),
    ("snowflake://PENDO_LOADER@myorg-myaccount/PENDO/RAW", "must name one database"),
    ("snowflake://PENDO_LOADER@myorg-myaccount/PENDO#x", "must name one database"),
    ("snowflake://PENDO_LOADER@xy12345.snowflakecomputing.com/PENDO", "not its host name"),
    ("snowflake://PENDO_LOADER@myorg-myaccount:443/PENDO", "must be an account identifier"),
    (f"{URL}?schema=RAW", "unknown parameter 'schema'"),
    (f"{URL}?role=A&role=B", "gives role= twice"),
    (f"{URL}?warehouse=", "warehouse= in the Snowflake warehouse URL is empty"),
    (f"{URL}?port=https", "port= in the Snowflake warehouse URL must be a whole number from 1 to 65535"),
    (f"{URL}?port=0", "must be a whole number from 1 to 65535"),
    (f"{URL}?port=65536", "must be a whole number from 1 to 65535"),
    (f"{URL}?protocol=ftp", "protocol= in the Snowflake warehouse URL must be http or https"),
])
def test_a_bad_url_is_refused_saying_what_to_do(password: None, url: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as refusal:
        parse_snowflake_url(url)
    assert_plain(str(refusal.value))


@pytest.mark.parametrize("url", [
    f"snowflake://PENDO_LOADER:{SECRET}@myorg-myaccount/PENDO",
    "snowflake://PENDO_LOADER:hunter2#s3cret@myorg-myaccount/PENDO",
    "snowflake://PENDO_LOADER:hunter2?s3cret@myorg-myaccount/PENDO",
    "snowflake://PENDO_LOADER:hunter2/s3cret@myorg-myaccount/PENDO",
    "snowflake://jane@corp.com:hunter2-s3cret@myorg-myaccount/PENDO",
])
def test_a_password_in_the_url_is_refused_without_echoing_it(password: None, url: str) -> None:
    with pytest.raises(UserError, match=f"must not hold a password.*set {PASSWORD_VARIABLE}") as refusal:
        parse_snowflake_url(url)
    assert_plain(str(refusal.value), "hunter2", "s3cret")


def test_a_secret_given_as_a_parameter_is_refused_without_echoing_it(password: None) -> None:
    with pytest.raises(UserError, match="unknown parameter 'password'.*SNOWFLAKE_") as refusal:
        parse_snowflake_url(f"{URL}?password=hunter2")
    assert_plain(str(refusal.value), "hunter2")


# Secrets from the environment


def test_no_secret_set_names_the_variables_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "   ")  # blank counts as unset
    with pytest.raises(UserError) as refusal:
        parse_snowflake_url(URL)
    for name in (PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE, PASSWORD_VARIABLE):
        assert name in str(refusal.value)


@pytest.mark.parametrize(("variables", "secret_variable", "passphrase_variable"), [
    ({PASSWORD_VARIABLE}, PASSWORD_VARIABLE, None),
    ({PASSWORD_VARIABLE, PASSPHRASE_VARIABLE}, PASSWORD_VARIABLE, None),
    ({PASSWORD_VARIABLE, PRIVATE_KEY_VARIABLE}, PRIVATE_KEY_VARIABLE, None),
    ({PRIVATE_KEY_VARIABLE, PASSPHRASE_VARIABLE}, PRIVATE_KEY_VARIABLE, PASSPHRASE_VARIABLE),
    ({PASSWORD_VARIABLE, PRIVATE_KEY_PATH_VARIABLE, PASSPHRASE_VARIABLE}, PRIVATE_KEY_PATH_VARIABLE,
     PASSPHRASE_VARIABLE),
])
def test_the_key_is_preferred_to_the_password(monkeypatch: pytest.MonkeyPatch, variables: set[str],
                                              secret_variable: str, passphrase_variable: str | None) -> None:
    for name in variables:
        monkeypatch.setenv(name, SECRET)
    target = parse_snowflake_url(URL)
    assert (target.secret_variable, target.passphrase_variable) == (secret_variable, passphrase_variable)
    assert target.uses_key_pair == (secret_variable != PASSWORD_VARIABLE)
    assert SECRET not in repr(target) and SECRET not in target.describe()


def test_two_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_VARIABLE, SECRET)
    monkeypatch.setenv(PRIVATE_KEY_PATH_VARIABLE, "/keys/loader.p8")
    with pytest.raises(UserError, match=f"both {PRIVATE_KEY_VARIABLE} and {PRIVATE_KEY_PATH_VARIABLE}") as refusal:
        parse_snowflake_url(URL)
    assert_plain(str(refusal.value), "/keys/loader.p8")


# The Dagster resource


def env_var_name(value: object) -> str:
    assert isinstance(value, dg.EnvVar), f"{value!r} is not an EnvVar"
    return value.env_var_name


def test_the_resource_holds_the_password_variable_never_its_value(password: None) -> None:
    resource = parse_snowflake_url(f"{URL}?warehouse=LOADING&role=LOADER&host=127.0.0.1&port=8123&protocol=http"
                                   ).resource()
    assert env_var_name(resource.password) == PASSWORD_VARIABLE
    assert (resource.private_key, resource.private_key_path, resource.private_key_password) == (None, None, None)
    assert (resource.account, resource.user, resource.database, resource.warehouse, resource.role) == (
        "myorg-myaccount", "PENDO_LOADER", "PENDO", "LOADING", "LOADER")
    assert (resource.autocommit, resource.paramstyle) == (True, "qmark")
    assert (resource.login_timeout, resource.network_timeout) == (LOGIN_TIMEOUT_SECONDS, NETWORK_TIMEOUT_SECONDS)
    assert resource.additional_snowflake_connection_args == {
        "host": "127.0.0.1", "port": 8123, "protocol": "http",
        "session_parameters": {**SESSION_PARAMETERS, "LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS,
                               "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}}
    assert SECRET not in repr(resource)


@pytest.mark.parametrize("key_variable", [PRIVATE_KEY_VARIABLE, PRIVATE_KEY_PATH_VARIABLE])
def test_the_resource_holds_the_key_variables_never_their_values(monkeypatch: pytest.MonkeyPatch,
                                                                 key_variable: str) -> None:
    monkeypatch.setenv(key_variable, SECRET)
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASSPHRASE)
    resource = parse_snowflake_url(URL).resource()
    field = {PRIVATE_KEY_VARIABLE: "private_key", PRIVATE_KEY_PATH_VARIABLE: "private_key_path"}[key_variable]
    assert env_var_name(getattr(resource, field)) == key_variable
    assert env_var_name(resource.private_key_password) == PASSPHRASE_VARIABLE
    assert resource.password is None
    # Snowflake's own endpoint: no host, port or protocol of ours, but the same session parameters.
    assert resource.additional_snowflake_connection_args == {
        "session_parameters": {**SESSION_PARAMETERS, "LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS}}
    assert SECRET not in repr(resource) and PASSPHRASE not in repr(resource)


# Connections to the fakesnow server


def test_a_connection_runs_a_query(snowflake_server: FakeSnowflakeServer, snowflake_database: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    snowflake_server.use_in(monkeypatch)
    with snowflake_server.target(snowflake_database).connect() as connection:
        assert connection.cursor().execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("as_base64", [False, True])
def test_an_encrypted_private_key_logs_in(snowflake_server: FakeSnowflakeServer, snowflake_database: str,
                                          monkeypatch: pytest.MonkeyPatch, private_key: rsa.RSAPrivateKey,
                                          as_base64: bool) -> None:
    snowflake_server.use_in(monkeypatch)
    key_text = pem(private_key, PASSPHRASE)
    monkeypatch.setenv(PRIVATE_KEY_VARIABLE, base64.b64encode(key_text.encode()).decode() if as_base64 else key_text)
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASSPHRASE)
    target = snowflake_server.target(snowflake_database)
    assert target.uses_key_pair
    with target.connect() as connection:
        assert connection.cursor().execute("SELECT 1").fetchone() == (1,)


def test_statements_commit_on_their_own(snowflake_server: FakeSnowflakeServer, snowflake_database: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    snowflake_server.use_in(monkeypatch)
    target = snowflake_server.target(snowflake_database)
    with target.connect() as connection:
        connection.cursor().execute("CREATE SCHEMA pendo")
        connection.cursor().execute("CREATE TABLE pendo.visitors (visitor_id VARCHAR)")
        connection.cursor().execute("INSERT INTO pendo.visitors VALUES (?)", ["visitor-1"])
    with target.connect() as connection:
        assert connection.cursor().execute("SELECT COUNT(*) FROM pendo.visitors").fetchone() == (1,)


def test_a_failing_block_rolls_back_its_transaction(snowflake_server: FakeSnowflakeServer, snowflake_database: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    snowflake_server.use_in(monkeypatch)
    target = snowflake_server.target(snowflake_database)
    with target.connect() as connection:
        connection.cursor().execute("CREATE SCHEMA pendo")
        connection.cursor().execute("CREATE TABLE pendo.visitors (visitor_id VARCHAR)")
        connection.cursor().execute("INSERT INTO pendo.visitors VALUES (?)", ["visitor-1"])
    with pytest.raises(RuntimeError, match="checks failed"), target.connect() as connection:
        connection.cursor().execute("BEGIN")
        connection.cursor().execute("DELETE FROM pendo.visitors")
        raise RuntimeError("checks failed")
    # fakesnow keeps every session until it stops (close() cannot log out of it), so a transaction left open
    # there would make this DELETE conflict with the one above.
    with target.connect() as connection:
        assert connection.cursor().execute("DELETE FROM pendo.visitors").rowcount == 1


def test_nothing_listening_is_a_plain_error_within_seconds(snowflake_server: FakeSnowflakeServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    snowflake_server.use_in(monkeypatch)
    target = replace(snowflake_server.target("PENDO"), port=free_port())
    started = time.monotonic()
    with pytest.raises(UserError) as refusal, target.connect():
        pass
    assert time.monotonic() - started < 10
    message = str(refusal.value)
    assert f"account fakesnow at http://127.0.0.1:{target.port}" in message and "database PENDO" in message
    assert PASSWORD_VARIABLE in message
    assert_plain(message)


@pytest.mark.parametrize(("key_variable", "key_text", "expected"), [
    (PRIVATE_KEY_VARIABLE, f"not a key {SECRET}", "Unable to load private key"),
    (PRIVATE_KEY_VARIABLE, None, "Password was not given but private key is encrypted"),
    (PRIVATE_KEY_PATH_VARIABLE, "/no/such/folder/loader.p8", "No such file or directory"),
])
def test_an_unreadable_key_is_a_plain_error(snowflake_server: FakeSnowflakeServer, monkeypatch: pytest.MonkeyPatch,
                                            private_key: rsa.RSAPrivateKey, key_variable: str, key_text: str | None,
                                            expected: str) -> None:
    snowflake_server.use_in(monkeypatch)
    key_text = key_text or pem(private_key, PASSPHRASE)  # None: encrypted, but no passphrase is set
    monkeypatch.setenv(key_variable, key_text)
    with pytest.raises(UserError, match=f"cannot read the private key in {key_variable}: .*{expected}") \
            as refusal, snowflake_server.target("PENDO").connect():
        pass
    assert PASSPHRASE_VARIABLE in str(refusal.value)
    if key_variable == PRIVATE_KEY_VARIABLE:
        # Whole key lines only: a PEM's short last line could match ordinary words by chance.
        assert_plain(str(refusal.value), *(line for line in key_text.splitlines() if len(line) >= 16))


def test_a_database_the_role_cannot_use_is_a_plain_error(password: None) -> None:
    # In-process fakesnow, as its server creates any database a login names; Snowflake logs in without one.
    import fakesnow

    target = replace(parse_snowflake_url(f"{URL}?role=PENDO_LOADER"), login_timeout_seconds=2,
                     network_timeout_seconds=2)
    with fakesnow.patch(create_database_on_connect=False):
        with pytest.raises(UserError, match="database PENDO does not exist in account myorg-myaccount, or role "
                                            "PENDO_LOADER cannot use it") as refusal, target.connect():
            pass
    assert_plain(str(refusal.value))
