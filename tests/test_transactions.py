"""atomic() and manual transactions hold one connection and keep Django's semantics."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connections, transaction

from tests.support.pgstat import backend_pid, idle_in_transaction
from tests.support.wrappers import assert_released
from tests.testapp.models import Item


def test_atomic_holds_one_backend_and_releases_at_exit(engine: str) -> None:
    with transaction.atomic(using=engine):
        first = backend_pid(engine)
        Item.objects.using(engine).create(name="a")
        with transaction.atomic(using=engine):
            assert backend_pid(engine) == first
            Item.objects.using(engine).create(name="b")
        assert connections[engine].connection is not None
        assert backend_pid(engine) == first
    assert_released(engine)
    assert Item.objects.using(engine).count() == 2


def test_savepoint_rollback_keeps_outer_work(engine: str) -> None:
    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="keep")
        with pytest.raises(IntegrityError), transaction.atomic(using=engine):
            Item.objects.using(engine).create(name="keep")
        Item.objects.using(engine).create(name="also")
    assert_released(engine)
    assert sorted(Item.objects.using(engine).values_list("name", flat=True)) == ["also", "keep"]


def test_exception_rolls_back_and_releases(engine: str, admin: psycopg.Connection[Any]) -> None:
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="gone")
        1 / 0  # noqa: B018
    assert_released(engine)
    assert not Item.objects.using(engine).exists()
    assert not idle_in_transaction(admin)


def test_set_rollback(engine: str) -> None:
    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="rolled")
        transaction.set_rollback(True, using=engine)
    assert_released(engine)
    assert not Item.objects.using(engine).exists()


def test_durable_block(engine: str) -> None:
    with transaction.atomic(using=engine, durable=True):
        Item.objects.using(engine).create(name="d")
    assert_released(engine)
    with pytest.raises(RuntimeError), transaction.atomic(using=engine):
        with transaction.atomic(using=engine, durable=True):
            pass
    assert_released(engine)


def test_on_commit_runs_after_commit_and_can_query(engine: str) -> None:
    seen: list[Any] = []

    def hook() -> None:
        seen.append(Item.objects.using(engine).count())

    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="x")
        transaction.on_commit(hook, using=engine)
        assert seen == []
    assert seen == [1]
    assert_released(engine)


def test_on_commit_not_run_after_rollback(engine: str) -> None:
    seen: list[int] = []
    with pytest.raises(ValueError), transaction.atomic(using=engine):
        transaction.on_commit(lambda: seen.append(1), using=engine)
        raise ValueError
    assert seen == []
    assert_released(engine)


def test_manual_transaction_keeps_mode_across_commit(engine: str) -> None:
    wrapper = connections[engine]
    wrapper.set_autocommit(False)
    try:
        pid = backend_pid(engine)
        Item.objects.using(engine).create(name="committed")
        wrapper.commit()
        assert wrapper.get_autocommit() is False
        assert backend_pid(engine) == pid
        Item.objects.using(engine).create(name="undone")
        assert backend_pid(engine) == pid
        wrapper.rollback()
        assert wrapper.connection is not None
    finally:
        wrapper.set_autocommit(True)
    assert_released(engine)
    assert list(Item.objects.using(engine).values_list("name", flat=True)) == ["committed"]


def test_raw_begin_stays_on_its_connection(engine: str, admin: psycopg.Connection[Any]) -> None:
    wrapper = connections[engine]
    with wrapper.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO testapp_item (name, value, created) VALUES ('r', 0, now())")
    # The server says a transaction is open: the connection is not returned.
    assert wrapper.connection is not None
    with wrapper.cursor() as cursor:
        cursor.execute("ROLLBACK")
    assert_released(engine)
    assert not Item.objects.using(engine).exists()
    assert not idle_in_transaction(admin)


def test_cursor_opened_before_failing_atomic(engine: str, admin: psycopg.Connection[Any]) -> None:
    Item.objects.using(engine).create(name="dup")
    cursor = connections[engine].cursor()
    cursor.execute("SELECT 1")
    with pytest.raises(IntegrityError), transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="dup")
    cursor.execute("SELECT 2")
    assert cursor.fetchone() == (2,)
    assert not idle_in_transaction(admin)
    cursor.close()
    assert_released(engine)
    assert not idle_in_transaction(admin)
