"""The actors the end-to-end tests and the benchmark send messages to.

Every actor stores its result (or its exception) in the Redis result backend
and is never retried, so the sender sees exactly what happened.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import dramatiq
from django.db import connection, transaction

from django_pg_real_pool import pinned
from integrations._common import actors, tenancy

from .models import Note

OPTIONS: dict[str, Any] = {"max_retries": 0, "store_results": True}


# The shared load task and leak actors (integrations._common.actors); the
# probe and the time-limit cases below are dramatiq's own.
globals().update(
    actors.define(__name__, lambda fn: dramatiq.actor(fn, **OPTIONS), (actors.load, *actors.LEAKS))
)
# The tenant-per-message tasks (integrations._common.tenancy).
globals().update(actors.define(__name__, lambda fn: dramatiq.actor(fn, **OPTIONS), tenancy.TASKS))


# -- what the next message sees ----------------------------------------------------


@dramatiq.actor(**OPTIONS)
def probe() -> dict[str, Any]:
    """This thread's view of its connection and of the pool, after a query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('search_path'), "
            "now() = statement_timestamp(), "
            "(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()), "
            "(SELECT count(*) FROM pg_cursors)"
        )
        pid, search_path, fresh_transaction, temp_tables, cursors = cursor.fetchone()
    seen: dict[str, Any] = {
        "thread": threading.get_ident(),
        # dramatiq-gevent: worker threads are greenlets.
        "gevent": _gevent_patched(),
        "pid": pid,
        "search_path": search_path,
        "fresh_transaction": fresh_transaction,
        "temp_tables": temp_tables,
        "open_cursors": cursors,
        "autocommit": connection.get_autocommit(),
        "in_atomic_block": connection.in_atomic_block,
        "needs_rollback": connection.needs_rollback,
        "released": connection.connection is None,
    }
    seen.update(pool_state())
    return seen


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


def pool_state() -> dict[str, Any]:
    """The pool's counters, its connections out of the pool, what every
    thread's wrapper holds."""
    supply = getattr(connection, "_lease_supply", None)
    if supply is None:  # stock engine
        pool = getattr(connection, "pool", None)
        return {"pool": dict(pool.get_stats()) if pool is not None else {}}
    from django_pg_real_pool import _bracket, _counters

    # The pool may be replacing a discarded connection in the background
    # (counted in pool_size before it is available): let that settle.
    deadline = time.monotonic() + 5
    stats = supply.stats()
    while stats["pool_size"] != stats["pool_available"] and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = supply.stats()
    return {
        "pool": stats,
        "out_of_pool": stats["pool_size"] - stats["pool_available"],
        "holders": {k: v for k, v in _bracket.wrappers_snapshot().items() if v},
        "counters": dict(_counters.counters_by_alias().get("default", {})),
    }


@dramatiq.actor(**OPTIONS)
def pool_stats() -> dict[str, Any]:
    return pool_state()


# -- time limits ------------------------------------------------------------------


@dramatiq.actor(time_limit=300, **OPTIONS)
def time_limit_in_transaction(marker: str) -> None:
    """Exceeds its time limit inside a transaction, busy with queries."""
    with transaction.atomic():
        Note.objects.create(marker=marker)
        while True:
            Note.objects.filter(marker=marker).count()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.005)")


@dramatiq.actor(time_limit=500, **OPTIONS)
def time_limit_waiting_for_pool(marker: str) -> None:
    """Exceeds its time limit while it waits for a pooled connection: helper
    threads hold every connection of the pool meanwhile."""
    size = connection.settings_dict["OPTIONS"]["pool"]["max_size"]
    holding = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        with pinned():
            actors.backend_pid()
            holding.release()
            release.wait()

    helpers = [threading.Thread(target=hold) for _ in range(size)]
    try:
        for helper in helpers:
            helper.start()
        for _ in helpers:
            holding.acquire()
        Note.objects.create(marker=marker)
    finally:
        release.set()
        for helper in helpers:
            helper.join()


@dramatiq.actor(**OPTIONS)
def delayed_note(marker: str) -> str:
    """Runs after a delay (its re-enqueue happens on a consumer thread)."""
    Note.objects.create(marker=f"{marker}-ran")
    return marker
