"""Failed queries and dead backends never leak a connection or hand out a broken one."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction

from tests.support.pgstat import backend_pid, idle_in_transaction
from tests.support.wrappers import assert_released
from tests.testapp.models import Item


def test_integrity_error_returns_connection(engine: str) -> None:
    Item.objects.using(engine).create(name="u")
    with pytest.raises(IntegrityError):
        Item.objects.using(engine).create(name="u")
    assert_released(engine)
    assert Item.objects.using(engine).count() == 1


def test_syntax_error_returns_connection(engine: str) -> None:
    with pytest.raises(DatabaseError), connections[engine].cursor() as cursor:
        cursor.execute("SELEKT 1")
    assert_released(engine)
    assert backend_pid(engine) > 0


def test_statement_timeout_in_atomic_returns_connection(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    with pytest.raises(OperationalError), transaction.atomic(using=engine):
        with connections[engine].cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 50")
            cursor.execute("SELECT pg_sleep(5)")
    assert_released(engine)
    assert not idle_in_transaction(admin)
    # The next query runs on a healthy connection, without the local timeout.
    with connections[engine].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


def test_terminated_backend_is_discarded_not_reused(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    victim = backend_pid(engine)
    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [victim])
    # The pool still holds the dead connection: the cheap readiness check
    # spots the termination notice and replaces it before anyone gets it.
    pids = {backend_pid(engine) for _ in range(10)}
    assert victim not in pids
    assert_released(engine)


def test_backend_killed_mid_query_surfaces_and_recovers(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    import threading

    wrapper = connections[engine]
    cursor = wrapper.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    killer = threading.Timer(0.2, lambda: admin.execute("SELECT pg_terminate_backend(%s)", [pid]))
    killer.start()
    try:
        with pytest.raises(OperationalError):
            cursor.execute("SELECT pg_sleep(10)")
    finally:
        killer.join()
    cursor.close()
    assert_released(engine)
    assert backend_pid(engine) != pid
    assert Item.objects.using(engine).count() == 0


def test_killed_inside_atomic_leaves_no_transaction(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    with pytest.raises(OperationalError), transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="lost")
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid(engine)])
        Item.objects.using(engine).create(name="never")
    assert_released(engine)
    assert not Item.objects.using(engine).exists()
    assert not idle_in_transaction(admin)


def test_close_inside_atomic_rolls_back_and_recovers_after_block(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    wrapper = connections[engine]
    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="rolled-back")
        wrapper.close()
        assert wrapper.closed_in_transaction
        with pytest.raises(Exception, match="Cannot open a new connection in an atomic block"):
            Item.objects.using(engine).count()
    # Django's own semantics: the block is over, the wrapper works again.
    assert Item.objects.using(engine).count() == 0
    assert_released(engine)
    assert not idle_in_transaction(admin)
