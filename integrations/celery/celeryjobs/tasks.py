"""Tasks the end-to-end tests and the benchmark send by name.

``load`` is the workload (query, non-database work, query). The ``leak_*``
tasks each leave the thread's connection in a state the bracket must repair.
``probe`` reports what the process and its pool look like, from inside.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg_pool import PoolTimeout

from django_pg_real_pool import PoolExhausted, pinned
from integrations._common import actors, tenancy

from .models import Entry

# The tenant-per-message tasks (integrations._common.tenancy).
globals().update(actors.define(__name__, shared_task, tenancy.TASKS))

# Cursors a task "forgot": referenced here so nothing closes them.
_forgotten_cursors: list[Any] = []


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@shared_task
def load(work_ms: int) -> dict[str, Any]:
    """Query, ``work_ms`` of work without the database, query."""
    started = time.time()
    try:
        first = _backend_pid()
        time.sleep(work_ms / 1000)  # stands for an HTTP call, a computation...
        second = _backend_pid()
    except (PoolExhausted, PoolTimeout, OperationalError) as exc:
        timeout = isinstance(exc, (PoolExhausted, PoolTimeout)) or isinstance(
            exc.__cause__, PoolTimeout
        )
        if not timeout:
            raise
        return {"ok": False, "pool_timeout": True, "start": started, "end": time.time()}
    return {"ok": True, "pids": [first, second], "start": started, "end": time.time()}


@shared_task
def write(key: str) -> int:
    """A clean write: committed."""
    return Entry.objects.create(key=key).pk


@shared_task
def leak_autocommit(key: str) -> str:
    """Ends with autocommit off and an uncommitted write."""
    transaction.set_autocommit(False)
    Entry.objects.create(key=key)
    return "left a transaction open"


@shared_task
def leak_cursor() -> str:
    """Ends with a cursor open (rows left unread)."""
    cursor = connection.cursor()
    cursor.execute("SELECT generate_series(1, 3)")
    cursor.fetchone()
    _forgotten_cursors.append(cursor)
    return "left a cursor open"


@shared_task
def leak_pinned() -> str:
    """Raises inside a pinned() block whose exit never runs, after a SET."""
    pinned().__enter__()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 1234")
    raise ValueError("task failed inside pinned()")


@shared_task
def raise_in_atomic(key: str) -> str:
    """Raises inside atomic(): atomic() itself rolls back; nothing leaks."""
    with transaction.atomic():
        Entry.objects.create(key=key)
        raise ValueError("task failed inside atomic()")


@shared_task
def leak_search_path() -> str:
    """Sets session state outside pinned()."""
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog")
    return "left search_path changed"


@shared_task(soft_time_limit=1, time_limit=30)
def soft_limit_in_transaction(key: str) -> str:
    """Hit by its soft time limit in the middle of a manual transaction."""
    transaction.set_autocommit(False)
    Entry.objects.create(key=key)
    time.sleep(20)  # SoftTimeLimitExceeded is raised in here
    return "not reached"


@shared_task(time_limit=3)
def hard_limit_in_transaction(key: str) -> str:
    """Killed by its hard time limit in the middle of a manual transaction."""
    transaction.set_autocommit(False)
    Entry.objects.create(key=key)
    time.sleep(60)  # the child is killed in here
    return "not reached"


@shared_task(time_limit=3)
def hard_limit_ignoring_sigterm(key: str) -> str:
    """Like ``hard_limit_in_transaction``, but deaf to the parent's SIGTERM:
    only the SIGKILL that follows ends it, so no task_postrun ever runs."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    transaction.set_autocommit(False)
    Entry.objects.create(key=key)
    time.sleep(60)  # the child is killed in here
    return "not reached"


def _barrier(name: str, parties: int, timeout: float = 60) -> None:
    """Return once ``parties`` probes reached this point (each on its own thread
    or process: a worker runs at most ``concurrency`` tasks at a time)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        if client.incr(f"pgrp:barrier:{name}:arrived") == parties:
            client.rpush(f"pgrp:barrier:{name}:go", *["go"] * parties)
        if client.blpop([f"pgrp:barrier:{name}:go"], timeout=timeout) is None:
            raise TimeoutError(f"barrier {name!r}: fewer than {parties} probes arrived")
    finally:
        client.close()


@shared_task
def probe(barrier: str, parties: int) -> dict[str, Any]:
    """The session a task gets, then (once every probe has queried) the state of
    this process's wrappers and pool."""
    from celery import signals

    from django_pg_real_pool import _bracket, _counters, _registry
    from django_pg_real_pool import celery as pgrp_celery

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('search_path'), "
            "current_setting('statement_timeout'), now() = statement_timestamp(), "
            "pg_current_xact_id_if_assigned() IS NULL"
        )
        pid, search_path, statement_timeout, fresh_xact, no_xid = cursor.fetchone()
    _barrier(barrier, parties)
    # The engine's view: connections parked for the next borrow count as available.
    entry = _registry.get("default")
    stats = entry.adapter.stats() if entry is not None else {}
    counters = _counters.counters_by_alias().get("default")

    def names(signal: Any) -> list[str]:
        return [getattr(r, "__qualname__", repr(r)) for r in pgrp_celery._receivers_of(signal)]

    return {
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "backend_pid": pid,
        "search_path": search_path,
        "statement_timeout": statement_timeout,
        "fresh_transaction": fresh_xact,
        "no_xid": no_xid,
        "holders": {k: v for k, v in _bracket.wrappers_snapshot().items() if v},
        "checked_out": stats.get("pool_size", 0) - stats.get("pool_available", 0),
        "pool_timeouts": stats.get("requests_errors", 0),
        "leaks_counted": counters["leaks"] if counters is not None else 0,
        "prerun_receivers": names(signals.task_prerun),
        "postrun_receivers": names(signals.task_postrun),
        "process_init_seconds": pgrp_celery.last_process_init_seconds,
    }
