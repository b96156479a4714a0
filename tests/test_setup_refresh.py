"""Per-connection set-up stays right when a migration changes the database's types.

Connections are set up (``connection_created`` receivers registering type
adapters) once per physical connection. A connection set up before an
extension or type existed must learn about it at its next borrow, on every
physical connection, without costing anything when nothing changed.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.postgres import signals as pg_signals
from django.contrib.postgres.operations import HStoreExtension
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections
from django.db.backends.signals import connection_created
from psycopg.types.enum import EnumInfo, register_enum

from django_pg_real_pool import invalidate_setup
from tests.support.concurrent import on_threads

POOL_SIZE = 4  # tests/settings.py: both engines' aliases


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


def _raw(connection: Any) -> psycopg.Connection[Any]:
    # The dj engine holds SQLAlchemy's proxy around the psycopg connection.
    held = connection.connection
    return getattr(held, "driver_connection", held)


def _register_mood(connection: Any, **kwargs: Any) -> None:
    """A project's receiver: adapt an enum type, if it exists yet."""
    info = EnumInfo.fetch(_raw(connection), "pgrp_mood")
    if info is not None:
        register_enum(info, _raw(connection), Mood)


def _all_connections_run(alias: str, sql: str, params: list[Any]) -> list[tuple[Any, int]]:
    """``sql`` on every physical connection of the pool at once: (value, pid)."""

    def work(barrier: threading.Barrier) -> tuple[Any, int]:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT {sql}, pg_backend_pid()", params)
            value, pid = cursor.fetchone()
            barrier.wait()  # every thread holds a distinct connection now
        return value, int(pid)

    return on_threads(POOL_SIZE, work)


@pytest.fixture
def hstore_app(admin: psycopg.Connection[Any]) -> Iterator[None]:
    """``django.contrib.postgres`` installed, hstore not created yet."""
    admin.execute("DROP EXTENSION IF EXISTS hstore")
    pg_signals.get_hstore_oids.cache_clear()
    # What django.contrib.postgres' AppConfig.ready() connects.
    connection_created.connect(pg_signals.register_type_handlers, dispatch_uid="pgrp-hstore")
    try:
        yield
    finally:
        connection_created.disconnect(dispatch_uid="pgrp-hstore")
        admin.execute("DROP EXTENSION IF EXISTS hstore")
        invalidate_setup()


def test_hstore_created_by_a_migration_works_on_every_connection(
    engine: str, hstore_app: None
) -> None:
    # Every physical connection set up (and announced) before the extension.
    before = {pid for _, pid in _all_connections_run(engine, "1", [])}
    assert len(before) == POOL_SIZE
    # What the migration of an HStoreField app runs.
    with connections[engine].schema_editor() as editor:
        HStoreExtension().database_forwards("testapp", editor, None, None)  # type: ignore[arg-type]
    rows = _all_connections_run(engine, "%s::hstore", [{"a": "1"}])
    assert [value for value, _ in rows] == [{"a": "1"}] * POOL_SIZE
    # The same physical connections, set up again (not replaced).
    assert {pid for _, pid in rows} == before


@pytest.fixture
def mood_receiver(admin: psycopg.Connection[Any]) -> Iterator[list[int]]:
    """A receiver adapting the ``pgrp_mood`` enum; yields the pids it ran for."""
    admin.execute("DROP TYPE IF EXISTS pgrp_mood")
    announced: list[int] = []

    def receiver(connection: Any, **kwargs: Any) -> None:
        _register_mood(connection)
        announced.append(_raw(connection).info.backend_pid)

    connection_created.connect(receiver, weak=False, dispatch_uid="pgrp-mood")
    try:
        yield announced
    finally:
        connection_created.disconnect(dispatch_uid="pgrp-mood")
        admin.execute("DROP TYPE IF EXISTS pgrp_mood")
        invalidate_setup()


def test_type_created_by_run_sql_is_adapted_everywhere_once(
    engine: str, mood_receiver: list[int]
) -> None:
    before = {pid for _, pid in _all_connections_run(engine, "1", [])}
    # A RunSQL migration creating a type.
    with connections[engine].schema_editor() as editor:
        editor.execute("CREATE TYPE pgrp_mood AS ENUM ('happy', 'sad')")
    mood_receiver.clear()
    rows = _all_connections_run(engine, "'sad'::pgrp_mood", [])
    assert [value for value, _ in rows] == [Mood.sad] * POOL_SIZE
    assert {pid for _, pid in rows} == before
    # Each physical connection set up again exactly once, then never again.
    assert sorted(mood_receiver) == sorted(before)
    for _ in range(3):
        _all_connections_run(engine, "'happy'::pgrp_mood", [])
    assert sorted(mood_receiver) == sorted(before)


def test_post_migrate_sets_connections_up_again(
    engine: str, mood_receiver: list[int], admin: psycopg.Connection[Any]
) -> None:
    before = {pid for _, pid in _all_connections_run(engine, "1", [])}
    # Created behind the engine's back (a RunPython's cursor, another process).
    admin.execute("CREATE TYPE pgrp_mood AS ENUM ('happy', 'sad')")
    assert [v for v, _ in _all_connections_run(engine, "'sad'::pgrp_mood", [])] == ["sad"] * 4
    # The end of `migrate`.
    emit_post_migrate_signal(verbosity=0, interactive=False, db=engine)
    rows = _all_connections_run(engine, "'sad'::pgrp_mood", [])
    assert [value for value, _ in rows] == [Mood.sad] * POOL_SIZE
    assert {pid for _, pid in rows} == before
