"""A writer that turns read-only (a managed database's failover) drains the pool.

Two throwaway servers, A then B, in one libpq multi-host setting with
``target_session_attrs=read-write``, as a client of a failing-over cluster
sees them. A is fenced with ``default_transaction_read_only`` and a reload:
the engine notices at the next return to the pool, drains it, and the new
connections reach B. Nothing written is lost, and A keeps no session of ours.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import InternalError, connections
from django.db.utils import load_backend

from tests.support.pgserver import PostgresServer
from tests.support.pgstat import wait_until

APP = "pgrp-failover"
BACKENDS = {"native": "django_pg_real_pool", "dj": "django_pg_real_pool.dj_db_conn_pool"}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    with PostgresServer() as first, PostgresServer() as second:
        for server in (first, second):
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute("CREATE TABLE written (id serial, engine text, port int)")
        yield first, second


def _sql(server: PostgresServer, query: str) -> list[Any]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


def _fence(server: PostgresServer, on: bool) -> None:
    value = "on" if on else "DEFAULT"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {value}")
        conn.execute("SELECT pg_reload_conf()")


def _ours(server: PostgresServer) -> int:
    rows = _sql(server, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'")
    return int(rows[0][0])


@pytest.fixture(params=list(BACKENDS))
def wrapper(
    request: pytest.FixtureRequest, servers: tuple[PostgresServer, PostgresServer]
) -> Iterator[Any]:
    first, second = servers
    engine = BACKENDS[request.param]
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings.update(
        ENGINE=engine,
        NAME="postgres",
        USER="postgres",
        HOST="127.0.0.1,127.0.0.1",
        PORT=f"{first.port},{second.port}",
        OPTIONS={"application_name": APP, "target_session_attrs": "read-write"},
    )
    if request.param == "native":
        settings["OPTIONS"]["pool"] = {"min_size": 1, "max_size": 2, "timeout": 5}
    else:
        settings["POOL_OPTIONS"] = {"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    made = load_backend(engine).DatabaseWrapper(settings, f"failover_{request.param}")
    try:
        yield made
    finally:
        made.close()
        made.close_pool()
        _fence(first, on=False)
        for server in servers:
            _sql(server, "TRUNCATE written")


def _write(wrapper: Any) -> int:
    """One autocommit INSERT; the port of the server that took it."""
    with wrapper.cursor() as cursor:
        cursor.execute(
            "INSERT INTO written (engine, port) VALUES (%s, inet_server_port()) RETURNING port",
            [wrapper.vendor],
        )
        return int(cursor.fetchone()[0])


def test_read_only_writer_drains_the_pool_to_the_new_writer(
    wrapper: Any, servers: tuple[PostgresServer, PostgresServer], caplog: Any
) -> None:
    first, second = servers
    assert {_write(wrapper) for _ in range(10)} == {first.port}
    assert _ours(first) >= 1
    _fence(first, on=True)
    refused = 0
    accepted: list[int] = []

    def write_reaches_second() -> bool:
        nonlocal refused
        try:
            accepted.append(_write(wrapper))
        except InternalError as exc:  # 25006: read-only transaction
            assert isinstance(exc.__cause__, psycopg.errors.ReadOnlySqlTransaction)
            refused += 1
            return False
        return accepted[-1] == second.port

    with caplog.at_level(logging.WARNING, logger="django_pg_real_pool"):
        assert wait_until(write_reaches_second, timeout=15), (refused, accepted)
    assert any("turned read-only" in r.getMessage() for r in caplog.records)
    # Every later write goes to B; A keeps no session of ours.
    assert {_write(wrapper) for _ in range(10)} == {second.port}
    assert wait_until(lambda: _ours(first) == 0, timeout=10)
    # Nothing lost: each write that returned is on the server it named.
    on_first = int(_sql(first, "SELECT count(*) FROM written")[0][0])
    on_second = int(_sql(second, "SELECT count(*) FROM written")[0][0])
    assert on_first == 10 + accepted.count(first.port)
    assert on_second == 10 + accepted.count(second.port)


def test_replica_alias_is_not_drained(
    wrapper: Any, servers: tuple[PostgresServer, PostgresServer]
) -> None:
    # A connection opened read-only (an alias for a replica) stays pooled.
    first, _second = servers
    wrapper.settings_dict["OPTIONS"]["target_session_attrs"] = "any"
    _fence(first, on=True)
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), inet_server_port()")
        pid, port = cursor.fetchone()
    assert port == first.port
    for _ in range(5):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == pid
    wrapper.close()
    # Sent back through the pool (the lane parks it at most a second): still there.
    assert _sql(first, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")[0][0] == 1
