"""Run a function on several threads at once, each on its own Django wrappers."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def on_threads(count: int, work: Callable[[threading.Barrier], T]) -> list[T]:
    """``work(barrier)`` on ``count`` threads started together; their results.

    ``work`` may wait on the barrier to make every thread hold a connection at
    the same moment (distinct physical connections). Each thread closes its
    wrappers before it ends. The first exception raised by a thread is re-raised.
    """
    barrier = threading.Barrier(count, timeout=30)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def in_thread(fn: Callable[[], T], context: contextvars.Context | None = None) -> T:
    """``fn()`` on a new thread, its result (or its exception). A plain thread
    starts without the caller's ``contextvars``; ``context``: run in that one."""
    return on_threads(1, lambda _: context.run(fn) if context is not None else fn())[0]
