"""Session state never outlives its owner's intent nor reaches another borrower."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections, transaction

from django_pg_real_pool import SessionStateError, _session_policy, pinned
from tests.support.concurrent import in_thread
from tests.support.wrappers import SINGLE, assert_released
from tests.testapp.models import Item


@pytest.fixture
def single(engine: str) -> Iterator[str]:
    """An alias of ``engine`` whose pool has ONE connection."""
    alias = SINGLE[engine]
    yield alias
    connections[alias].close()


@pytest.fixture(scope="module", autouse=True)
def tenant_role(django_db_blocker: Any) -> None:
    from tests.support.pgstat import admin_dsn

    with django_db_blocker.unblock(), psycopg.connect(admin_dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pgrp_tenant'").fetchone()
        if not exists:
            conn.execute("CREATE ROLE pgrp_tenant NOLOGIN")


def query(alias: str, sql: str) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0] if cursor.description else None


def pid(alias: str) -> int:
    return int(query(alias, "SELECT pg_backend_pid()"))


# What a borrower may leave, and how the next one would see it.
LEAKS: dict[str, tuple[str, str, Any]] = {
    "search_path": ("SET search_path TO pg_catalog", "SHOW search_path", '"$user", public'),
    "statement_timeout": ("SET statement_timeout = 1234", "SHOW statement_timeout", "0"),
    "role": ("SET ROLE pgrp_tenant", "SELECT current_user", "postgres"),
    "temp_table": (
        "CREATE TEMP TABLE secret (x int)",
        "SELECT to_regclass('pg_temp.secret') IS NOT NULL",
        False,
    ),
    "prepared": ("PREPARE leaked AS SELECT 1", "SELECT count(*) FROM pg_prepared_statements", 0),
    "advisory_lock": (
        "SELECT pg_advisory_lock(4242)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        0,
    ),
    "listen": ("LISTEN private_channel", "SELECT count(*) FROM pg_listening_channels()", 0),
    "set_config": (
        "SELECT set_config('application_name', 'tenant-a', false)",
        "SELECT current_setting('application_name') = 'tenant-a'",
        False,
    ),
}


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_next_borrower_on_same_backend_sees_clean_session(single: str, leak: str) -> None:
    set_sql, probe_sql, clean = LEAKS[leak]

    def first() -> int:
        backend = pid(single)
        query(single, set_sql)
        # Pinned to this thread: the state is still there for its owner.
        assert pid(single) == backend
        assert query(single, probe_sql) != clean
        return backend

    def second() -> tuple[int, Any]:
        return pid(single), query(single, probe_sql)

    backend = in_thread(first)  # ends like a request: close() -> reset
    same_backend, seen = in_thread(second)
    assert same_backend == backend, "the pool of one should hand out the same backend"
    assert seen == clean


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_pinned_block_state_is_reset_at_exit(single: str, leak: str) -> None:
    set_sql, probe_sql, clean = LEAKS[leak]
    with pinned(using=single):
        backend = pid(single)
        query(single, set_sql)
        assert query(single, probe_sql) != clean
        assert pid(single) == backend
    assert_released(single)
    assert pid(single) == backend
    assert query(single, probe_sql) == clean


def test_pinned_nests_and_holds_one_connection(engine: str) -> None:
    with pinned(using=engine):
        first = pid(engine)
        with pinned(using=engine):
            assert pid(engine) == first
        assert connections[engine].connection is not None
        assert pid(engine) == first
    assert_released(engine)


def test_pinned_as_decorator(engine: str) -> None:
    @pinned(using=engine)
    def work() -> tuple[int, int]:
        return pid(engine), pid(engine)

    a, b = work()
    assert a == b
    assert_released(engine)


def test_pinned_is_thread_local(engine: str) -> None:
    with pinned(using=engine):
        pid(engine)

        # Another thread is not pinned: it releases after each query.
        def other() -> bool:
            pid(engine)
            return connections[engine].connection is None

        assert in_thread(other) is True


def test_session_statement_pins_until_close_and_warns_once(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_pg_real_pool")
    _session_policy.warned_sites.clear()  # "once per call site" is per process
    for _ in range(3):
        with connections[engine].cursor() as cursor:
            cursor.execute("SET statement_timeout = 5000")  # this line is the call site
    backend = pid(engine)
    # The code keeps seeing its own state on later queries.
    assert query(engine, "SHOW statement_timeout") == "5s"
    assert pid(engine) == backend
    assert connections[engine].lease_holders()["session_state"] == "SET"
    warnings = [r for r in caplog.records if "outside pinned()" in r.getMessage()]
    assert len(warnings) == 1
    assert "test_session.py" in warnings[0].getMessage()
    assert "SET statement on alias" in warnings[0].getMessage()
    connections[engine].close()
    assert_released(engine)


def test_session_state_inside_atomic_outlives_commit_so_it_pins(engine: str) -> None:
    with transaction.atomic(using=engine):
        query(engine, "SET search_path TO pg_catalog, public")
    assert connections[engine].connection is not None
    assert "pg_catalog" in query(engine, "SHOW search_path")
    connections[engine].close()
    assert_released(engine)


def test_error_policy_refuses_before_running(engine: str) -> None:
    wrapper = connections[engine]
    settings = wrapper._lease_settings
    wrapper.ensure_connection()
    wrapper.close()
    from dataclasses import replace

    wrapper._lease_settings = replace(wrapper._lease_settings, session_state="error")
    try:
        with pytest.raises(SessionStateError, match=r"SET statement.*pinned\(\)"):
            query(engine, "SET search_path TO pg_catalog")
        assert_released(engine)
        assert "pg_catalog" not in query(engine, "SHOW search_path")
        with pinned(using=engine):  # the escape hatch is allowed
            query(engine, "SET search_path TO pg_catalog")
    finally:
        wrapper._lease_settings = settings
    assert_released(engine)


def test_ignore_policy_does_not_pin_but_still_resets(engine: str) -> None:
    from dataclasses import replace

    wrapper = connections[engine]
    wrapper.ensure_connection()
    wrapper.close()
    settings = wrapper._lease_settings
    wrapper._lease_settings = replace(settings, session_state="ignore")
    try:
        resets = wrapper._lease_counters["resets"]
        query(engine, "SET search_path TO pg_catalog")
        assert_released(engine)
        assert wrapper._lease_counters["resets"] == resets + 1
        assert "pg_catalog" not in query(engine, "SHOW search_path")
    finally:
        wrapper._lease_settings = settings


def test_clean_connections_are_never_reset(engine: str) -> None:
    counters = connections[engine]._lease_counters
    before = counters["resets"]
    for i in range(20):
        Item.objects.using(engine).create(name=f"c{i}")
        with transaction.atomic(using=engine):
            Item.objects.using(engine).filter(name=f"c{i}").update(value=i)
    assert counters["resets"] == before


def test_connection_created_settings_are_configuration_not_dirt(single: str) -> None:
    from django.db.backends.signals import connection_created

    def configure(connection: Any, **kwargs: Any) -> None:
        if connection.alias == single:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")

    connections[single].ensure_connection()
    connections[single].close()
    connection_created.connect(configure, weak=False, dispatch_uid="cfg")
    try:
        # Reset the only connection so it is announced again.
        with pinned(using=single):
            pid(single)
        assert query(single, "SHOW lock_timeout") == "3s"
        assert_released(single)  # the receiver's SET did not pin it
        assert query(single, "SHOW lock_timeout") == "3s"
    finally:
        connection_created.disconnect(dispatch_uid="cfg")
