"""``task_scope()``: the task bracket for code no queue integration covers.

Executors, ``asyncio.run()`` inside a task, management commands, cron
scripts, task runners without a hook-up: the same check, repair and report
the dramatiq middleware and the Celery handlers do, from
:mod:`django_pg_real_pool._bracket`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from . import _bracket

__all__ = ["task_scope"]

F = TypeVar("F", bound=Callable[..., Any])


class task_scope:  # noqa: N801 - used like contextlib's context managers
    """Bracket a unit of work: clean thread at entry, checked and repaired at exit.

    As a context manager (``with task_scope("nightly-import"):``) or a
    decorator (``@task_scope("nightly-import")``, one bracket per call):

    * at entry, every alias this thread used must be released, in autocommit,
      outside any transaction; what earlier code left is repaired and
      reported ("before the task started");
    * at exit, on every exit: an open transaction is rolled back, a held or
      pinned connection goes back to the pool (reset if it carries session
      state), and ONE error record per leaking alias names ``name`` and
      ``task_id`` (logger ``django_pg_real_pool.bracket``); the engine's
      ``leaks`` counter counts it. :attr:`leaks` lists what was found.
    * ``strict=True`` (default: the ``REAL_POOL_STRICT`` setting) then
      raises :class:`~django_pg_real_pool.LeakedConnection` — unless the body
      raised, whose exception is never replaced.

    Inside another bracket on the same thread (a queue integration's task,
    an outer ``task_scope``) it does nothing: the outer bracket owns the
    thread, and repairing at entry would roll back the caller's transaction.
    It covers the calling thread only: in an executor, decorate the function
    each worker thread runs; under ``asyncio.run()``, the function given to
    ``sync_to_async``.
    """

    def __init__(self, name: str, *, task_id: str | None = None, strict: bool | None = None):
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"task_scope() needs the task's name as a non-empty string, got {name!r}: "
                'write @task_scope("my-task") (with parentheses and a name).'
            )
        self.name = name
        self.task_id = task_id
        self.strict = strict
        #: What the last exit found (empty: clean, or nested).
        self.leaks: list[_bracket.Leak] = []
        self._outer: list[bool] = []

    def __enter__(self) -> task_scope:
        outer = _bracket.current_task() is None
        self._outer.append(outer)
        if outer:
            _bracket.begin(self.name, self.task_id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._outer.pop():
            self.leaks = []
            return
        self.leaks = _bracket.end(self.name, self.task_id)
        if self.leaks and exc_type is None and _bracket.resolve_strict(self.strict):
            raise _bracket.leaked_error(self.name, self.task_id, self.leaks)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            raise TypeError(
                f"task_scope() cannot decorate the coroutine function {func.__qualname__}: "
                "connections are per thread and a coroutine's ORM work runs in "
                "sync_to_async's threads (not the thread that called asyncio.run()). "
                "Decorate the function given to sync_to_async."
            )

        @functools.wraps(func)
        def bracketed(*args: Any, **kwargs: Any) -> Any:
            # A new scope per call: threads and recursion never share one.
            with task_scope(self.name, task_id=self.task_id, strict=self.strict):
                return func(*args, **kwargs)

        return bracketed  # type: ignore[return-value]
