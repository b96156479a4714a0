"""Django Tasks hook-up: the task bracket on ``task_started`` / ``task_finished``.

One line in ``INSTALLED_APPS``::

    INSTALLED_APPS = [..., "django_pg_real_pool.tasks.RealPoolTasksConfig"]

Its ``ready()`` connects the bracket to the signals Django's Tasks framework
sends around every run — ``django.tasks`` (Django 6.x) and the
``django_tasks`` backport (Django 5.x), whichever are installed — so it works
for any backend whose worker sends them (``django-tasks-db``'s
``db_worker``, ``django-tasks-rq``, ...):

* ``task_started``: the worker's thread must be clean (repaired and
  reported if not);
* ``task_finished`` (success and failure): what the task leaked is rolled
  back, returned to the pool and reported, one error record per alias.

``ImmediateBackend`` runs a task inside its caller (maybe inside the caller's
transaction) and ``DummyBackend`` never runs one: both are left alone, as
Celery's eager tasks are.

Limits, from where the frameworks send their signals: ``task_finished`` comes
after the worker stored the result, so there is no strict mode (the task
cannot be failed any more); and a worker that stores the result through the
task's own thread and connection (``db_worker``) writes it inside a
transaction the task leaked, which the repair then rolls back — the task
stays ``RUNNING``, and the leak record names it.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from django.apps import AppConfig

from . import _bracket

__all__ = ["SIGNAL_MODULES", "RealPoolTasksConfig", "connect"]

logger = logging.getLogger(__name__)

#: Where each Tasks framework defines its signals (built in, then the backport).
SIGNAL_MODULES = ("django.tasks.signals", "django_tasks.signals")
APP_CONFIG_PATH = "django_pg_real_pool.tasks.RealPoolTasksConfig"

_UID = "django_pg_real_pool.tasks."
#: Backends that run tasks in their caller or not at all (by class name, in
#: either framework).
IN_CALLER_BACKENDS = ("ImmediateBackend", "DummyBackend")
#: Signal modules connect() connected to, in this process.
_connected: set[str] = set()


class RealPoolTasksConfig(AppConfig):
    """The app whose ``ready()`` connects the bracket to the Tasks signals."""

    name = "django_pg_real_pool.tasks"
    label = "django_pg_real_pool_tasks"
    verbose_name = "django_pg_real_pool for Django Tasks"

    def ready(self) -> None:
        connect()


def connect() -> list[str]:
    """Connect the bracket to every installed Tasks framework; idempotent.

    Returns the signal modules it connected to.
    """
    connected = []
    for module_name in SIGNAL_MODULES:
        try:
            signals = importlib.import_module(module_name)
        except ImportError:
            continue
        signals.task_started.connect(
            _on_task_started, weak=False, dispatch_uid=_UID + "started." + module_name
        )
        signals.task_finished.connect(
            _on_task_finished, weak=False, dispatch_uid=_UID + "finished." + module_name
        )
        connected.append(module_name)
    _connected.update(connected)
    return connected


def is_connected() -> bool:
    """Whether :func:`connect` connected the bracket to a Tasks framework in
    this process (read by the W501 system check)."""
    return bool(_connected)


def _runs_in_a_worker(sender: Any) -> bool:
    return not any(
        cls.__name__ in IN_CALLER_BACKENDS for cls in getattr(sender, "__mro__", (type(sender),))
    )


def _describe(task_result: Any) -> tuple[str, str | None]:
    task = getattr(task_result, "task", None)
    label = getattr(task, "module_path", None) or "django task"
    task_id = getattr(task_result, "id", None)
    return str(label), None if task_id is None else str(task_id)


def _on_task_started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if _runs_in_a_worker(sender):
        _guarded(_bracket.begin, *_describe(task_result))


def _on_task_finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if _runs_in_a_worker(sender):
        _guarded(_bracket.end, *_describe(task_result))


def _guarded(func: Any, *args: Any) -> None:
    # The worker sends these signals with send(): an exception here would
    # fail the task (task_started) or the worker's bookkeeping.
    try:
        func(*args)
    except Exception:
        logger.exception("django_pg_real_pool: %s failed in a Django Tasks signal", func.__name__)
