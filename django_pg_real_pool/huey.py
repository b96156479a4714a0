"""huey hook-up: ``install(huey)`` maps huey's hooks onto the task bracket.

One call where the project has its ``Huey`` instance, e.g. in an app's
``AppConfig.ready()`` with django-huey's instance::

    from huey.contrib.djhuey import HUEY
    from django_pg_real_pool.huey import install

    install(HUEY)

It registers (under the name ``django_pg_real_pool``, so a second call is a
no-op):

* ``pre_execute`` / ``post_execute``: the bracket of :mod:`._bracket` around
  every task a consumer runs (thread, greenlet and process workers alike).
  huey calls ``post_execute`` after success, failure, retry, timeout and lock
  or rate-limit refusals; a task cancelled by another pre-execute hook never
  ran. In ``immediate`` mode tasks run inside their caller (maybe inside its
  transaction) and are left alone, as Celery's eager tasks are.
* ``on_startup``: each worker resets what it inherited (a process worker's
  fork hook already dropped the parent's pools without touching them).
* ``on_shutdown``: each worker returns what its thread holds; a process
  worker also closes its pools, so its server sessions end at once.

Strict mode is not offered: huey stores a task's result before any hook
runs, so a hook cannot fail the task. Leaks are repaired and reported.
"""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from . import _bracket

__all__ = ["HOOK_NAME", "install"]

logger = logging.getLogger(__name__)

#: The name of every hook ``install()`` registers.
HOOK_NAME = "django_pg_real_pool"


def install(huey: Any) -> None:
    """Bracket every task ``huey``'s consumer runs; release at worker exit.

    Idempotent. Call it before the consumer starts (module level or an
    ``AppConfig.ready()``), in the process that runs ``run_huey`` /
    ``huey_consumer``.
    """
    if is_installed(huey):
        return

    def pre_execute(task: Any) -> None:
        if not huey.immediate:
            _guarded(_bracket.begin, _label(task), task.id)

    def post_execute(task: Any, task_value: Any, exception: BaseException | None) -> None:
        if not huey.immediate:
            _guarded(_bracket.end, _label(task), task.id)

    def startup() -> None:
        _guarded(
            _bracket.check_and_repair,
            "huey worker",
            None,
            phase="when the huey worker started (inherited)",
        )

    def shutdown() -> None:
        _guarded(_bracket.release_thread, "huey worker")
        if multiprocessing.parent_process() is not None:
            # A process worker: nothing else uses its pools.
            _guarded(_bracket.close_pools)

    huey.pre_execute(HOOK_NAME)(pre_execute)
    huey.post_execute(HOOK_NAME)(post_execute)
    huey.on_startup(HOOK_NAME)(startup)
    huey.on_shutdown(HOOK_NAME)(shutdown)


def is_installed(huey: Any) -> bool:
    """Whether :func:`install` ran for ``huey``."""
    return HOOK_NAME in getattr(huey, "_pre_execute", {})


def _label(task: Any) -> str:
    return str(getattr(task, "name", None) or type(task).__name__)


def _guarded(func: Any, *args: Any, **kwargs: Any) -> None:
    # huey logs an exception raised by a hook, but one from pre_execute
    # would abort the task: a bug here must never cost the user's task.
    try:
        func(*args, **kwargs)
    except Exception:
        logger.exception("django_pg_real_pool: %s failed in a huey hook", func.__name__)
