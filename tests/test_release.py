"""The connection goes back to the pool as soon as nothing holds it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connections

from tests.support.pgstat import backend_pid, sessions
from tests.support.wrappers import assert_released
from tests.testapp.models import Item


def test_connection_released_after_orm_read(engine: str) -> None:
    list(Item.objects.using(engine).all())
    assert_released(engine)
    Item.objects.using(engine).filter(name="x").exists()
    assert_released(engine)
    Item.objects.using(engine).count()
    assert_released(engine)


def test_connection_released_after_orm_writes(engine: str) -> None:
    item = Item.objects.using(engine).create(name="a")
    assert_released(engine)
    item.value = 3
    item.save(using=engine)
    assert_released(engine)
    Item.objects.using(engine).bulk_create([Item(name=f"b{i}") for i in range(50)])
    assert_released(engine)
    assert Item.objects.using(engine).filter(name__startswith="b").update(value=1) == 50
    assert_released(engine)
    Item.objects.using(engine).filter(name__startswith="b").delete()
    assert_released(engine)
    assert Item.objects.using(engine).count() == 1


def test_cursor_with_block_releases_on_exit(engine: str) -> None:
    with connections[engine].cursor() as cursor:
        cursor.execute("SELECT 1")
        assert connections[engine].connection is not None
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
    assert_released(engine)


def test_cursor_keeps_one_backend_until_closed(engine: str) -> None:
    with connections[engine].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        first = cursor.fetchone()[0]
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == first


def test_raw_queryset_releases_when_iterated(engine: str) -> None:
    Item.objects.using(engine).create(name="raw")
    names = [i.name for i in Item.objects.using(engine).raw("SELECT * FROM testapp_item")]
    assert names == ["raw"]
    assert_released(engine)


def test_released_connection_serves_another_thread(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    import threading

    pids: list[int] = []

    def work() -> None:
        for _ in range(20):
            pids.append(backend_pid(engine))
        connections[engine].close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(pids) == 160
    # 8 threads, pool of 4: connections were shared, never more than the pool.
    assert len(set(pids)) <= 4
    assert len(sessions(admin, engine)) <= 4


def test_get_autocommit_does_not_borrow(engine: str) -> None:
    wrapper = connections[engine]
    assert wrapper.get_autocommit() is True
    assert wrapper.connection is None


def test_ensure_connection_then_query_releases(engine: str) -> None:
    wrapper = connections[engine]
    wrapper.ensure_connection()
    assert wrapper.connection is not None
    Item.objects.using(engine).count()
    assert_released(engine)


def test_wrappers_of_other_threads_survive_close_pool(engine: str) -> None:
    import threading

    # Django's test database set-up ends with a bare ensure_connection() on
    # this thread: start from a released wrapper.
    connections[engine].close()
    go = threading.Event()
    done = threading.Event()
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(backend_pid(engine))
            go.wait(30)
            # This thread's wrapper still points at the closed pool.
            results.append(backend_pid(engine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections[engine].close()
            done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not results and t.is_alive():
        t.join(0.01)
    connections[engine].close_pool()  # what Django's test set-up and ensure_timezone() do
    go.set()
    t.join(30)
    assert not errors, errors
    assert len(results) == 2
    assert_released(engine)


def test_borrowing_from_an_event_loop_is_refused(engine: str) -> None:
    import asyncio

    from django.core.exceptions import SynchronousOnlyOperation

    async def borrow() -> None:
        connections[engine].ensure_connection()

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(borrow())
    assert connections[engine].connection is None
