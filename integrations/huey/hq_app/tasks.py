"""The tasks the end-to-end tests and the benchmark enqueue (``hq_app.tasks.<name>``).

The same cases as the dramatiq and Celery projects: a load task, a probe of
the thread's connection, one task per kind of leak. Results (and errors) go
to huey's Redis result store, so the sender sees exactly what happened.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from huey.contrib.djhuey import db_task, task
from psycopg_pool import PoolTimeout

from django_pg_real_pool import PoolExhausted, pinned

from .models import Note

if settings.ENGINE_KIND == "stock":
    # The stock engine needs django-huey's db_task (close_old_connections()
    # around each task) to give a connection back at all; this engine's
    # bracket does that and more.
    task = db_task


class PoolTimedOut(Exception):
    """No pooled connection within the pool timeout (either engine)."""


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@task()
def load(work_ms: int) -> dict[str, Any]:
    """Query, ``work_ms`` of work that does not use the database, query."""
    try:
        first = _backend_pid()
        started = time.time()
        time.sleep(work_ms / 1000)
        finished = time.time()
        return {"pids": [first, _backend_pid()], "work": [started, finished]}
    except OperationalError as exc:
        if isinstance(exc, PoolExhausted) or isinstance(exc.__cause__, PoolTimeout):
            raise PoolTimedOut(str(exc)) from exc
        raise


@task()
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


# -- leaks, one task per case ------------------------------------------------------


@task()
def leak_autocommit_off(marker: str) -> None:
    """Switches autocommit off, writes, never commits."""
    transaction.set_autocommit(False)
    Note.objects.create(marker=marker)


@task()
def leak_open_cursor(marker: str) -> None:
    """Runs a query on a cursor it never closes nor reads."""
    cursor = connection.cursor()
    cursor.execute("SELECT %s", [marker])


@task()
def leak_pinned_exception(marker: str) -> None:
    """Raises while inside pinned(), with session state set (never exited)."""
    stack = ExitStack()
    stack.enter_context(pinned())
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog, public")
        cursor.execute("CREATE TEMPORARY TABLE leak_scratch (marker text)")
    raise RuntimeError(f"failed inside pinned() ({marker})")


@task()
def leak_atomic_left_open(marker: str) -> None:
    """Raises inside an atomic() block that is never exited."""
    transaction.atomic().__enter__()
    Note.objects.create(marker=marker)
    raise ValueError(f"failed inside an unexited atomic() ({marker})")


@task()
def leak_search_path(marker: str) -> None:
    """SET outside pinned(): the connection stays with the thread until the end."""
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog, public")
        cursor.execute("SELECT %s", [marker])


@task()
def raise_in_atomic(marker: str) -> None:
    """Raises inside ``with atomic()``: Django rolls back, nothing leaks."""
    with transaction.atomic():
        Note.objects.create(marker=marker)
        raise ValueError(f"failed inside atomic() ({marker})")
