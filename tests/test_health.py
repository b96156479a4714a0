"""Dead pooled connections are replaced without a round trip on every borrow."""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.pgserver import PostgresServer, settings_from_dsn
from tests.support.pgstat import backend_gone, wait_until
from tests.support.pgstat import wrapper_backend_pid as pid
from tests.support.wrappers import make_wrapper

ENGINE_SETTINGS = {
    "django_pg_real_pool": {"OPTIONS": {"pool": {"min_size": 4, "max_size": 4, "timeout": 10}}},
    "django_pg_real_pool.dj_db_conn_pool": {
        "POOL_OPTIONS": {"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "TIMEOUT": 10}
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server of our own: these tests restart it."""
    with PostgresServer() as srv:
        yield srv


@pytest.fixture(params=sorted(ENGINE_SETTINGS), ids=["native", "dj_db_conn_pool"])
def wrapper(request: pytest.FixtureRequest, server: PostgresServer) -> Iterator[Any]:
    engine = request.param
    alias = f"health-{engine.rsplit('.', 1)[-1]}"
    settings = {**settings_from_dsn(server.dsn()), **ENGINE_SETTINGS[engine]}
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "application_name": alias}
    w = make_wrapper(engine, alias, **settings)
    yield w
    w.close()
    w.close_pool()


def warm(w: Any) -> set[int]:
    """Borrow until the pool's 4 connections have all been seen."""
    seen: set[int] = set()
    for _ in range(200):
        seen.add(pid(w))
        if len(seen) == 4:
            break
    # Hold them all at once so the dj pool opens its 4 too.
    return seen


def test_no_round_trip_on_a_healthy_borrow(wrapper: Any) -> None:
    warm(wrapper)
    counters = wrapper._lease_counters
    pings = counters["pings"]
    for _ in range(100):
        pid(wrapper)
    assert counters["pings"] == pings


def test_terminating_every_backend_costs_no_failed_query(
    wrapper: Any, server: PostgresServer
) -> None:
    warm(wrapper)
    check_terminated_backends_are_spotted(wrapper, server)


def check_terminated_backends_are_spotted(wrapper: Any, server: PostgresServer) -> None:
    """Terminate every backend of ``wrapper``'s pool: every later query still
    succeeds, because stale connections are spotted before use."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            [wrapper.alias],
        ).fetchall()
    assert killed
    pids = [pid(wrapper) for _ in range(20)]
    assert len(pids) == 20
    assert wrapper._lease_counters["stale"] >= 1


@pytest.fixture
def without_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """``select.poll`` missing, as on Windows and under eventlet's monkey-patching."""
    monkeypatch.delattr(select, "poll")


def test_dead_connections_spotted_without_select_poll(
    without_poll: None, wrapper: Any, server: PostgresServer
) -> None:
    warm(wrapper)
    wrapper.ensure_connection()
    assert type(wrapper._lease_state.poller).__name__ == "_SelectPoller"
    wrapper.close()
    pings = wrapper._lease_counters["pings"]
    for _ in range(20):
        pid(wrapper)
    # A healthy borrow still costs no round trip.
    assert wrapper._lease_counters["pings"] == pings
    check_terminated_backends_are_spotted(wrapper, server)


def test_server_restart_costs_no_failed_query(wrapper: Any, server: PostgresServer) -> None:
    before = warm(wrapper)
    server.restart()
    after = [pid(wrapper) for _ in range(20)]
    assert not set(after) & before
    assert wrapper._lease_counters["stale"] >= 1


def test_idle_connections_checked_with_health_checks_on(server: PostgresServer) -> None:
    settings = {
        **settings_from_dsn(server.dsn()),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "pool": {"min_size": 1, "max_size": 2},
            "real_pool": {"health_check_idle": 0},
            "application_name": "health-idle",
        },
    }
    w = make_wrapper("django_pg_real_pool", "health-idle", **settings)
    try:
        pid(w)  # a brand-new connection is not checked: it just proved itself
        counters = w._lease_counters
        pings, acquires = counters["pings"], counters["acquires"]
        for _ in range(5):
            pid(w)
        # Idle longer than 0 s: every later borrow pings first.
        assert counters["pings"] - pings == counters["acquires"] - acquires == 5
    finally:
        w.close()
        w.close_pool()


def test_a_check_of_your_own_runs_when_the_pool_lends(server: PostgresServer) -> None:
    """``OPTIONS["pool"]["check"]`` goes to psycopg_pool (as on Django 6): it
    runs when the pool lends a connection, not at every borrow; a connection
    it finds broken is discarded and the borrower gets another."""
    checked: list[int] = []
    refused: list[int] = []

    def check(conn: psycopg.Connection[Any]) -> None:
        backend = conn.info.backend_pid
        conn.execute("SELECT 1")
        if not refused:
            # As a check that finds a connection broken: it is closed.
            refused.append(backend)
            conn.close()
            raise psycopg.OperationalError("refused by the test's check")
        checked.append(backend)

    alias = "health-user-check"
    settings = {
        **settings_from_dsn(server.dsn()),
        "OPTIONS": {
            "pool": {"min_size": 1, "max_size": 2, "timeout": 10, "check": check},
            "application_name": alias,
        },
    }
    w = make_wrapper("django_pg_real_pool", alias, **settings)
    try:
        first = pid(w)
        # The first connection failed the check: the pool closed it.
        assert first != refused[0]
        assert checked == [first]
        borrows = [pid(w) for _ in range(50)]
        # Released connections are parked and handed on in-process: the pool
        # lends (and checks) again only when one went back to it.
        assert 1 <= len(checked) < len(borrows)
        assert set(borrows) <= set(checked)
        # The backend of the refused connection ends once its socket closed.
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            assert wait_until(lambda: backend_gone(admin, refused[0]), timeout=10)
    finally:
        w.close()
        w.close_pool()
