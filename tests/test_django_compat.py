"""Django-compatibility regressions found by Django's own test suite (issue 9)."""

from __future__ import annotations

import copy
import gc
from typing import Any

import django
import pytest
from django.db import InterfaceError, connections, transaction

from tests.support.pgstat import wrapper_backend_pid


def test_pytest_django_db_blocker_also_blocks_the_engine(
    engine: str, django_db_blocker: Any
) -> None:
    connections[engine].close()
    with django_db_blocker.block():
        with pytest.raises(RuntimeError, match="Database access not allowed"):
            connections[engine].ensure_connection()


def test_explicitly_closed_cursor_refuses_to_run(engine: str) -> None:
    with connections[engine].cursor() as cursor:
        cursor.execute("SELECT 1")
    with pytest.raises(InterfaceError):
        cursor.execute("SELECT 1")


def test_explicitly_closed_cursor_refuses_to_run_inside_atomic(engine: str) -> None:
    with transaction.atomic(using=engine):
        cursor = connections[engine].cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        with pytest.raises(InterfaceError):
            cursor.execute("SELECT 1")


def test_pool_false_set_after_construction_holds_a_dedicated_connection(engine: str) -> None:
    # What Django's own tests do (backends/postgresql/tests.py no_pool_connection()).
    new: Any = connections[engine].copy()
    new.settings_dict = copy.deepcopy(connections[engine].settings_dict)
    new.settings_dict["OPTIONS"]["pool"] = False
    try:
        with new.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        # Stock behaviour: the wrapper keeps its connection between queries.
        assert new.connection is not None
        with new.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == pid
    finally:
        new.close()


def current_database(wrapper: Any) -> str:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        return str(cursor.fetchone()[0])


@pytest.mark.parametrize("pool_exists", [True, False], ids=["pool-exists", "no-pool-yet"])
def test_wrapper_for_another_database_under_the_alias_name_keeps_off_its_pool(
    pool_exists: bool,
) -> None:
    # Django's _nodb_cursor() falls back to
    # DatabaseWrapper({**settings, "NAME": <another database>}, alias=self.alias).
    # Sharing the alias's pool with it either sent it to the wrong database
    # or, if it came first, made the pool reach its database for everyone.
    # (The dj_db_conn_pool engine hands such a wrapper to
    # django-db-connection-pool, whose pools are per alias too.)
    engine = "default"
    wrapper = connections[engine]
    test_db = current_database(wrapper)
    if not pool_exists:
        wrapper.close_pool()
    one_off = type(wrapper)({**wrapper.settings_dict, "NAME": "postgres"}, alias=engine)
    try:
        assert current_database(one_off) == "postgres"
        assert one_off.connection is not None  # its own connection, held until close()
    finally:
        one_off.close()
    assert current_database(wrapper) == test_db
    assert wrapper.connection is None


@pytest.mark.skipif(
    django.VERSION < (6, 0), reason="Django < 6.0's wrappers are reference cycles themselves"
)
def test_a_dropped_wrapper_is_freed_without_the_garbage_collector(engine: str) -> None:
    # Django 6.1's test_release_memory_without_garbage_collection, with a
    # borrow. On the dj engine, django-db-connection-pool built a creation
    # class per wrapper, and the engine a subclass of it: a class is in its
    # own __mro__, so each wrapper dropped left two for the garbage collector.
    wrapper_backend_pid(connections[engine])  # the alias's pool exists
    gc.disable()
    # Until a collection finds nothing: one that frees earlier tests' wrappers
    # lets go of their pools, and a SQLAlchemy QueuePool is a reference cycle
    # (its dialect), which only the next collection frees.
    for _ in range(5):
        if not gc.collect():
            break
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        new: Any = connections[engine].copy()
        wrapper_backend_pid(new)
        new.close()
        del new
        gc.collect()
        assert gc.garbage == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_dj_wrappers_share_one_creation_class() -> None:
    # The creation class is built once, not per wrapper (see above), and the
    # wrapper still gets everything django-db-connection-pool's __init__ sets.
    from dj_db_conn_pool.backends.postgresql.base import DatabaseWrapper as PlainWrapper
    from dj_db_conn_pool.core.mixins.creation import DatabaseCreationMixin

    first: Any = connections["djpool"]
    second: Any = first.copy()
    assert type(first.creation) is type(second.creation)
    assert isinstance(first.creation, DatabaseCreationMixin)
    plain = PlainWrapper(copy.deepcopy(first.settings_dict), "djpool")
    assert set(vars(plain)) - {"creation_class"} <= set(vars(second))
