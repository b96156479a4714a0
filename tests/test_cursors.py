"""Server-side cursors and iterators keep the connection until every cursor is done."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import InterfaceError, connections, transaction

from tests.support.pgstat import backend_pid, idle_in_transaction
from tests.support.wrappers import assert_released
from tests.testapp.models import Item


@pytest.fixture
def items(engine: str) -> str:
    Item.objects.using(engine).bulk_create([Item(name=f"i{i:03}", value=i) for i in range(30)])
    return engine


def test_iterator_holds_until_exhausted(items: str) -> None:
    engine = items
    iterator = Item.objects.using(engine).order_by("value").iterator(chunk_size=5)
    first = next(iterator)
    assert first.value == 0
    assert connections[engine].connection is not None
    assert connections[engine].lease_holders()["cursors"] == 1
    rest = list(iterator)
    assert len(rest) == 29
    assert_released(engine)


def test_two_interleaved_iterators(items: str) -> None:
    engine = items
    a = Item.objects.using(engine).order_by("value").iterator(chunk_size=4)
    b = Item.objects.using(engine).order_by("-value").iterator(chunk_size=4)
    pairs = list(zip(a, b, strict=False))
    assert pairs[0][0].value == 0 and pairs[0][1].value == 29
    assert len(pairs) == 30
    # zip stopped at a's end: b's cursor is exhausted too only after next().
    assert list(b) == []
    assert_released(engine)


def test_queries_inside_iterator_loop_use_the_same_backend(items: str) -> None:
    engine = items
    pids = set()
    for item in Item.objects.using(engine).iterator(chunk_size=7):
        pids.add(backend_pid(engine))
        Item.objects.using(engine).filter(pk=item.pk).update(value=item.value + 100)
    assert len(pids) == 1
    assert_released(engine)
    assert Item.objects.using(engine).filter(value__gte=100).count() == 30


def test_atomic_per_row_inside_iterator_loses_no_write(
    items: str, admin: psycopg.Connection[Any]
) -> None:
    engine = items
    for item in Item.objects.using(engine).order_by("value").iterator(chunk_size=3):
        with transaction.atomic(using=engine):
            Item.objects.using(engine).create(name=f"copy-{item.name}", value=-1)
    assert_released(engine)
    # Every block's insert is there, the last one included.
    assert Item.objects.using(engine).filter(value=-1).count() == 30
    assert not idle_in_transaction(admin)


def test_iterator_opened_outside_atomic_exhausted_inside(items: str) -> None:
    engine = items
    iterator = Item.objects.using(engine).order_by("value").iterator(chunk_size=10)
    head = [next(iterator) for _ in range(5)]
    with transaction.atomic(using=engine):
        tail = list(iterator)
        Item.objects.using(engine).create(name="inside", value=999)
    assert len(head) + len(tail) == 30
    assert_released(engine)
    assert Item.objects.using(engine).filter(name="inside").exists()


def test_chunked_cursor_closed_early_releases(items: str) -> None:
    engine = items
    cursor = connections[engine].chunked_cursor()
    cursor.execute("SELECT id FROM testapp_item")
    assert len(cursor.fetchmany(3)) == 3
    cursor.close()
    assert_released(engine)


def test_abandoned_iterator_generator_releases_on_close(items: str) -> None:
    engine = items
    iterator = Item.objects.using(engine).iterator(chunk_size=2)
    next(iterator)
    iterator.close()  # what garbage collection of the generator does
    assert_released(engine)


def test_cursor_after_close_refuses_to_run(engine: str) -> None:
    cursor = connections[engine].cursor()
    cursor.execute("SELECT 1")
    connections[engine].close()
    assert_released(engine)
    with pytest.raises(InterfaceError, match="cursor already closed"):
        cursor.execute("SELECT 1")
    cursor.close()  # harmless


def test_server_side_cursor_after_close_never_touches_the_pool(items: str) -> None:
    engine = items
    cursor = connections[engine].chunked_cursor()
    cursor.execute("SELECT id FROM testapp_item")
    cursor.fetchmany(2)
    connections[engine].close()  # resets the session: the WITH HOLD cursor is gone
    with pytest.raises(InterfaceError, match="cursor already closed"):
        cursor.fetchmany(2)
    assert_released(engine)


def test_exhausted_client_cursor_can_execute_again(engine: str) -> None:
    cursor = connections[engine].cursor()
    cursor.execute("SELECT generate_series(1, 3)")
    assert [r[0] for r in cursor] == [1, 2, 3]
    assert_released(engine)
    cursor.execute("SELECT 42")
    assert cursor.fetchone() == (42,)
    cursor.close()
    assert_released(engine)
