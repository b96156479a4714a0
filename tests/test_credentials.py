"""Credentials from a callable, read at each new physical connection, on both engines.

A throwaway server checks the password of one role (SCRAM); the role's
password is rotated on the server while the pool runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connections
from django.db.utils import load_backend

from tests.support.pgauth import require_password, set_password
from tests.support.pgserver import PostgresServer
from tests.support.pgstat import wait_until

ROLE = "rotating"
APP = "pgrp-credentials"
BACKENDS = {"native": "django_pg_real_pool", "dj": "django_pg_real_pool.dj_db_conn_pool"}


class Token:
    """An IAM-style token source: whatever it holds now, and how often it was read."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.reads: list[str] = []

    def __call__(self, alias: str) -> Any:
        self.reads.append(alias)
        return {"user": ROLE, "password": self.password}


def broken_token(alias: str) -> str:
    raise RuntimeError("token service unreachable: secret-should-not-leak")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as running:
        require_password(running, ROLE, "first")
        yield running


def _make(server: PostgresServer, engine: str, credentials: Any, timeout: float = 5) -> Any:
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings.update(
        ENGINE=BACKENDS[engine],
        NAME="postgres",
        USER="nobody",  # replaced by the callable's "user"
        PASSWORD="",
        HOST="127.0.0.1",
        PORT=str(server.port),
        OPTIONS={"application_name": APP, "real_pool": {"credentials": credentials}},
    )
    if engine == "native":
        settings["OPTIONS"]["pool"] = {"min_size": 1, "max_size": 1, "timeout": timeout}
    else:
        settings["POOL_OPTIONS"] = {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": timeout}
    return load_backend(BACKENDS[engine]).DatabaseWrapper(settings, f"credentials_{engine}")


@pytest.fixture(params=list(BACKENDS))
def engine(request: pytest.FixtureRequest, server: PostgresServer) -> Iterator[str]:
    yield str(request.param)
    set_password(server, ROLE, "first")


def _whoami(wrapper: Any) -> tuple[str, int]:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT current_user, pg_backend_pid()")
        user, pid = cursor.fetchone()
    return str(user), int(pid)


def _terminate(server: PostgresServer, pid: int) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_rotated_password_is_read_at_the_next_connection(
    server: PostgresServer, engine: str
) -> None:
    token = Token("first")
    wrapper = _make(server, engine, token)
    try:
        user, pid = _whoami(wrapper)
        assert user == ROLE and token.reads
        reads = len(token.reads)
        # Rotation on the server: open sessions keep working, nothing reconnects.
        set_password(server, ROLE, "second")
        token.password = "second"
        assert _whoami(wrapper) == (ROLE, pid)
        assert len(token.reads) == reads
        # The next physical connection (this one terminated, as at the end of
        # its max_lifetime or a server restart) uses the new password.
        _terminate(server, pid)
        user, new_pid = _whoami(wrapper)
        assert user == ROLE and new_pid != pid
        assert len(token.reads) > reads
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_stale_token_fails_the_connection_clearly(server: PostgresServer, engine: str) -> None:
    token = Token("first")
    wrapper = _make(server, engine, token, timeout=1)
    try:
        _user, pid = _whoami(wrapper)
        set_password(server, ROLE, "second")  # the token source does not know yet
        _terminate(server, pid)
        with pytest.raises(OperationalError) as raised:
            # The lease finds the terminated connection and opens another.
            _whoami(wrapper)
        text = str(raised.value) + str(raised.value.__cause__)
        assert "password authentication failed" in text or "could not open any connection" in text
        # The source catches up: the same wrapper works again, nothing to restart.
        token.password = "second"
        assert wait_until(lambda: _ok(wrapper), timeout=10)
        assert _whoami(wrapper)[0] == ROLE
    finally:
        wrapper.close()
        wrapper.close_pool()


def _ok(wrapper: Any) -> bool:
    try:
        _whoami(wrapper)
    except OperationalError:
        return False
    return True


def test_failing_callable_is_a_connection_error_without_secrets(
    server: PostgresServer, engine: str
) -> None:
    wrapper = _make(server, engine, broken_token, timeout=1)
    try:
        with pytest.raises(OperationalError) as raised:
            _whoami(wrapper)
        text = repr(raised.value) + repr(raised.value.__cause__)
        assert "secret-should-not-leak" not in text
        assert "could not open any connection" in text or "['credentials'] raised" in text
    finally:
        wrapper.close()
        wrapper.close_pool()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("tests.nowhere.token", "cannot be imported"),
        ("tests.test_credentials.ROLE", "is not callable"),
        (42, "set it to a callable or its dotted path"),
    ],
)
def test_bad_setting_names_it(server: PostgresServer, engine: str, value: Any, words: str) -> None:
    wrapper = _make(server, engine, value)
    try:
        with pytest.raises(
            ImproperlyConfigured, match=r"\['real_pool'\]\['credentials'\]"
        ) as raised:
            _whoami(wrapper)
        assert words in str(raised.value)
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_dotted_path_is_imported(server: PostgresServer, engine: str) -> None:
    global current_token
    current_token = Token("first")
    wrapper = _make(server, engine, "tests.test_credentials.current_token")
    try:
        assert _whoami(wrapper)[0] == ROLE
        assert current_token.reads
    finally:
        wrapper.close()
        wrapper.close_pool()


current_token = Token("first")
