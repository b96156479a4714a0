"""The leak actors and the load task, written once for every queue's project.

Each project's task module wraps them in its queue's decorator with
:func:`define`, so they keep the names the queue gives its own tasks
(``hq_app.tasks.load``, ``rq_app.jobs.leak_open_cursor``, ...). The note
they write goes to the project's ``settings.NOTE_MODEL``.
"""

from __future__ import annotations

import os
import threading
import time
import types
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Model
from psycopg_pool import PoolTimeout

from django_pg_real_pool import PoolExhausted, pinned


class PoolTimedOut(Exception):
    """No pooled connection within the pool timeout (either engine)."""


def backend_pid() -> int:
    """The server process of this thread's connection (one query)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _note() -> type[Model]:
    return apps.get_model(settings.NOTE_MODEL)


def load(work_ms: int) -> dict[str, Any]:
    """Query, ``work_ms`` of work that does not use the database, query.

    Returns the backends of both queries and when the work ran (wall clock),
    so the sender can count how many tasks worked at the same time.
    """
    try:
        first = backend_pid()
        started = time.time()
        time.sleep(work_ms / 1000)
        finished = time.time()
        return {"pids": [first, backend_pid()], "work": [started, finished]}
    except OperationalError as exc:
        if isinstance(exc, PoolExhausted) or isinstance(exc.__cause__, PoolTimeout):
            raise PoolTimedOut(str(exc)) from exc
        raise


def probe() -> dict[str, Any]:
    """This thread's view of its connection and of the pool, after a query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('search_path'), "
            "now() = statement_timestamp(), "
            "(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())"
        )
        pid, search_path, fresh_transaction, temp_tables = cursor.fetchone()
    from django_pg_real_pool import _bracket

    return {
        "thread": threading.get_ident(),
        "process": os.getpid(),
        "pid": pid,
        "search_path": search_path,
        "fresh_transaction": fresh_transaction,
        "temp_tables": temp_tables,
        "autocommit": connection.get_autocommit(),
        "in_atomic_block": connection.in_atomic_block,
        "released": connection.connection is None,
        "holders": {k: v for k, v in _bracket.wrappers_snapshot().items() if v},
    }


# -- leaks, one actor per case ------------------------------------------------------


def leak_autocommit_off(marker: str) -> None:
    """Switches autocommit off, writes, never commits."""
    transaction.set_autocommit(False)
    _note().objects.create(marker=marker)


def leak_open_cursor(marker: str) -> None:
    """Runs a query on a cursor it never closes nor reads."""
    cursor = connection.cursor()
    cursor.execute("SELECT %s", [marker])


def leak_pinned_exception(marker: str) -> None:
    """Raises while inside pinned(), with session state set (never exited)."""
    stack = ExitStack()
    stack.enter_context(pinned())
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog, public")
        cursor.execute("CREATE TEMPORARY TABLE leak_scratch (marker text)")
    raise RuntimeError(f"failed inside pinned() ({marker})")


def leak_atomic_left_open(marker: str) -> None:
    """Raises inside an atomic() block that is never exited."""
    transaction.atomic().__enter__()
    _note().objects.create(marker=marker)
    raise ValueError(f"failed inside an unexited atomic() ({marker})")


def leak_search_path(marker: str) -> None:
    """SET outside pinned(): the connection stays with the thread until the end."""
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog, public")
        cursor.execute("SELECT %s", [marker])


def raise_in_atomic(marker: str) -> None:
    """Raises inside ``with atomic()``: Django rolls back, nothing leaks."""
    with transaction.atomic():
        _note().objects.create(marker=marker)
        raise ValueError(f"failed inside atomic() ({marker})")


LEAKS = (
    leak_autocommit_off,
    leak_open_cursor,
    leak_pinned_exception,
    leak_atomic_left_open,
    leak_search_path,
    raise_in_atomic,
)
#: What :func:`define` wraps unless told otherwise.
ALL = (load, probe, *LEAKS)


def define(
    module: str, decorate: Callable[[Any], Any], functions: Iterable[Any] = ALL
) -> dict[str, Any]:
    """Each of ``functions`` as a task of ``module``, wrapped by ``decorate``.

    Each function is copied with ``__module__`` set to ``module`` before it
    is decorated: queues name a task after where it is defined (huey's
    registry, Django Tasks' ``module_path``), and the worker finds it there.
    ``decorate`` is called once per function (a fresh decorator each time
    where the queue's is single-use, as dramatiq's ``actor(**options)`` is).
    Meant for ``globals().update(define(__name__, task()))``.
    """
    defined: dict[str, Any] = {}
    for function in functions:
        copy = types.FunctionType(
            function.__code__,
            function.__globals__,
            function.__name__,
            function.__defaults__,
            function.__closure__,
        )
        copy.__doc__ = function.__doc__
        copy.__annotations__ = function.__annotations__
        copy.__module__ = module
        copy.__qualname__ = function.__name__
        defined[function.__name__] = decorate(copy)
    return defined
