"""Celery hookup: ``install(app)`` maps Celery's signals onto the task bracket.

One call in the module that creates the Celery app::

    from django_pg_real_pool.celery import install

    install(app)

It connects (each receiver with a ``dispatch_uid`` and held strongly, so a
second ``install()`` is a no-op):

* ``task_prerun``/``task_postrun``: the bracket of :mod:`._bracket` around
  every task the worker runs for ``app``. Eager tasks run in their caller
  (inside its transaction, maybe) and are left alone. ``task_postrun`` is the
  end signal on every in-process exit: Celery sends it from a ``finally``
  after success, failure, retry, ``Reject``/``Ignore`` and a soft time limit.
* ``worker_init``: takes over the per-task handlers of Celery's
  ``DjangoWorkerFixup`` for ``app`` (see :func:`_take_over_fixup`);
  ``worker_ready`` logs what is in place.
* ``worker_process_init``: resets what a prefork child inherited in its
  thread's wrappers (the fork hook of :mod:`._fork` already dropped the
  inherited pools without touching them); a local check, no I/O.
* ``worker_process_shutdown``/``worker_shutdown``: every pool of the process
  is closed, so its server sessions end now rather than at socket close.
* ``task_failure``/``task_revoked``: for a task whose child the parent stopped
  (hard time limit: SIGTERM, then SIGKILL 0.1 s later; ``revoke(terminate=
  True)``) or lost, they are the only end signal in the parent. Nothing of
  that task lives in the parent: the child's bracket runs if the child gets to
  exit on SIGTERM, otherwise the server rolls back and ends the child's
  sessions when its sockets close. Logged once at INFO.

Strict mode (``install(app, strict=True)`` or ``settings.REAL_POOL_STRICT``)
fails a task that leaked. Celery logs and swallows exceptions raised by signal
receivers, and it publishes the result before ``task_postrun``, so the check
runs inside the task's call instead: ``install()`` mixes ``_StrictCall`` into
the app's task class, whose ``__call__`` checks the thread after the task body
and raises :class:`~django_pg_real_pool.LeakedConnection`. Celery then records
FAILURE, sends ``task_failure``, runs errbacks, and ``AsyncResult.get()``
raises.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from time import monotonic
from typing import Any

logger = logging.getLogger(__name__)

#: Django setting read by ``install(app)`` when ``strict`` is not given.
STRICT_SETTING = "REAL_POOL_STRICT"  # the same as _bracket.STRICT_SETTING

_UID = "django_pg_real_pool.celery."

# Guards _apps (written by install(), read by the receivers).
_lock = threading.Lock()
#: Apps given to install(), with their strict flag.
_apps: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
#: Per thread: depth of strict task calls (a task calling a task directly
#: runs inside the outer task's bracket).
_local = threading.local()
#: Whether this process runs the per-task work of Celery's DjangoWorkerFixup.
_took_over_fixup = False
#: Task ids already reported as stopped in their child (bounded).
_reported_stopped: collections.deque[str | None] = collections.deque(maxlen=64)
#: Strict tasks whose class lacks the strict call (their own ``base=``).
_warned_not_strict: set[str] = set()
#: Seconds the last ``worker_process_init`` receiver took (Celery allows 4).
last_process_init_seconds: float | None = None


def install(app: Any, *, strict: bool | None = None) -> None:
    """Bracket every task ``app``'s workers run; close pools at worker exit.

    Call it once, right after creating the app and before defining tasks
    (strict mode changes the app's task class). ``strict=None`` reads the
    Django setting ``REAL_POOL_STRICT`` (default False). Calling it again
    with the same arguments does nothing.
    """
    from django.core.exceptions import ImproperlyConfigured

    from . import _bracket

    app = _unwrap(app)
    strict_mode = _bracket.resolve_strict(strict)
    with _lock:
        previous = _apps.get(app)
        if previous is not None:
            if previous != strict_mode:
                raise ImproperlyConfigured(
                    f"django_pg_real_pool.celery.install() was already called for Celery app "
                    f"{app.main!r} with strict={previous}; it cannot change to "
                    f"strict={strict_mode}. Call install() once."
                )
            return
        if strict_mode:
            _install_strict_task_class(app)
        _apps[app] = strict_mode
    _connect()


def installed_anywhere() -> bool:
    """Whether :func:`install` ran for some app in this process (read by the
    W201 system check)."""
    with _lock:
        return bool(_apps)


def _install_strict_task_class(app: Any) -> None:
    from celery.utils.imports import symbol_by_name
    from django.core.exceptions import ImproperlyConfigured

    if "Task" in vars(app):
        # app.Task is a cached property: tasks made from it would not check.
        raise ImproperlyConfigured(
            f"django_pg_real_pool.celery.install(app, strict=True) ran after the task class of "
            f"Celery app {app.main!r} was created. Call install() right after Celery(...), "
            "before any task is defined or app.Task is used."
        )
    base = symbol_by_name(app.task_cls)
    if issubclass(base, _StrictCall):
        return
    app.task_cls = type(
        f"Strict{base.__name__}",
        (_StrictCall, base),
        {"__module__": __name__, "__doc__": base.__doc__},
    )


def _connect() -> None:
    from celery import signals

    receivers = (
        (signals.task_prerun, _on_task_prerun),
        (signals.task_postrun, _on_task_postrun),
        (signals.task_failure, _on_task_failure),
        (signals.task_revoked, _on_task_revoked),
        (signals.worker_init, _on_worker_init),
        (signals.worker_ready, _on_worker_ready),
        (signals.worker_process_init, _on_worker_process_init),
        (signals.worker_process_shutdown, _on_worker_process_shutdown),
        (signals.worker_shutdown, _on_worker_shutdown),
    )
    for signal, receiver in receivers:
        # Module-level functions would survive weak references too; weak=False
        # says it, and keeps working if a receiver is ever a closure.
        signal.connect(receiver, weak=False, dispatch_uid=_UID + receiver.__name__)


# -- task boundaries ---------------------------------------------------------


def _is_bracketed(task: Any) -> bool:
    """A task ``install()`` covers, run by a worker (not eagerly)."""
    if task is None or getattr(task.request, "is_eager", False):
        return False
    return _unwrap(task.app) in _apps


def _on_task_prerun(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if not _is_bracketed(sender):
        return
    from . import _bracket

    _bracket.begin(sender.name, task_id)
    if _took_over_fixup:
        _close_other_aliases()


def _on_task_postrun(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if not _is_bracketed(sender):
        return
    from . import _bracket

    try:
        leaks = _bracket.end(sender.name, task_id)
        if leaks and _apps.get(_unwrap(sender.app)) and not isinstance(sender, _StrictCall):
            _warn_not_strict(sender)
    finally:
        if _took_over_fixup:
            _close_other_aliases()
            _close_caches()


def _warn_not_strict(task: Any) -> None:
    if task.name in _warned_not_strict:
        return
    _warned_not_strict.add(task.name)
    logger.warning(
        "Strict mode could not fail %s: its class %s does not derive from app.Task, where "
        "install(app, strict=True) puts the check. Derive custom task bases from app.Task.",
        task.name,
        type(task).__mro__[1].__qualname__,
    )


def _on_task_failure(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    from celery.exceptions import Terminated, TimeLimitExceeded, WorkerLostError

    exception = kwargs.get("exception")
    # Only these come from the parent for a child it stopped or lost; every
    # other failure is sent in the task's thread and task_postrun follows.
    if isinstance(exception, (TimeLimitExceeded, WorkerLostError, Terminated)):
        _log_child_stopped(sender, task_id, type(exception).__name__)


def _on_task_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    if kwargs.get("terminated"):
        _log_child_stopped(sender, getattr(request, "id", None), "revoked, terminate=True")


def _log_child_stopped(task: Any, task_id: str | None, why: str) -> None:
    if task is None or _unwrap(task.app) not in _apps:
        return
    # Celery sends task_failure twice for a hard time limit: report once.
    with _lock:
        if task_id in _reported_stopped:
            return
        _reported_stopped.append(task_id)
    logger.info(
        "%s (id %s) was stopped in its worker child (%s). Its bracket ran only if the child "
        "got to exit on SIGTERM; otherwise PostgreSQL rolls back and ends the child's "
        "sessions when their sockets close (SIGKILL).",
        task.name,
        task_id or "-",
        why,
    )


class _StrictCall:
    """Mixed into the app's task class by strict mode: fail a task that leaked.

    Runs inside Celery's trace, before the result is stored, so the
    :class:`~django_pg_real_pool.LeakedConnection` raised here is the task's
    outcome. The task's own exception is never replaced.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task: Any = self
        request = task.request
        if (
            getattr(request, "is_eager", False)
            or getattr(request, "called_directly", True)
            or getattr(_local, "strict_depth", 0)
        ):
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        from . import _bracket

        task_id = request.id
        _local.strict_depth = 1
        try:
            try:
                result = super().__call__(*args, **kwargs)  # type: ignore[misc]
            except BaseException:
                # Clean and report; the task's exception is what propagates.
                _bracket.end(task.name, task_id)
                raise
            leaks = _bracket.end(task.name, task_id)
        finally:
            _local.strict_depth = 0
        if leaks:
            raise _bracket.leaked_error(task.name, task_id, leaks)
        return result


# -- Celery's Django fixup -------------------------------------------------


def _take_over_fixup(app: Any) -> bool:
    """Disconnect the ``DjangoWorkerFixup`` per-task receivers of ``app``.

    At ``task_prerun`` and ``task_postrun`` the fixup calls ``close()`` on
    every connection of the thread and, under prefork since Celery 5.6,
    ``close_pool()`` when ``OPTIONS["pool"]`` is set: it would destroy this
    engine's pool at every task boundary (celery#10554). The bracket already
    does the per-task work for this engine's aliases; the receivers here keep
    the fixup's behaviour for the other aliases (``close()`` around each task)
    and for caches (``close_caches()`` after each task). The fixup's
    ``worker_process_init`` receiver is kept: it finds this engine's
    inherited connections already forgotten.
    """
    try:
        from celery import signals
        from celery.fixups.django import DjangoWorkerFixup
    except ImportError:
        return False
    taken = False
    for signal, name in (
        (signals.task_prerun, "on_task_prerun"),
        (signals.task_postrun, "on_task_postrun"),
    ):
        for receiver in _receivers_of(signal):
            owner = getattr(receiver, "__self__", None)
            if (
                isinstance(owner, DjangoWorkerFixup)
                and getattr(receiver, "__name__", None) == name
                and _unwrap(owner.app) is app
            ):
                taken = bool(signal.disconnect(receiver)) or taken
    return taken


def _receivers_of(signal: Any) -> list[Any]:
    found = []
    for _key, ref in list(signal.receivers):
        receiver = ref() if isinstance(ref, weakref.ReferenceType) else ref
        if receiver is not None:
            found.append(receiver)
    return found


def _close_other_aliases() -> None:
    """What the fixup did around each task, for aliases of other engines."""
    from django.db import DatabaseError, connections

    from ._lease import LeaseMixin

    for wrapper in connections.all(initialized_only=True):
        if isinstance(wrapper, LeaseMixin):
            continue
        try:
            wrapper.close()
        except DatabaseError as exc:
            logger.warning("Could not close database alias %r after a task: %s", wrapper.alias, exc)


def _close_caches() -> None:
    from django.core.cache import close_caches

    close_caches()


# -- worker lifecycle ------------------------------------------------------


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    global _took_over_fixup
    app = _unwrap(getattr(sender, "app", None))
    if app is None or app not in _apps:
        return
    # The fixup connected its per-task receivers in its own worker_init
    # receiver, which Celery() connected before install() connected this one.
    if _take_over_fixup(app):
        _took_over_fixup = True


def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    # Logged here: at worker_init, Celery has not set up logging yet.
    app = _unwrap(getattr(sender, "app", None))
    if app is None or app not in _apps:
        return
    logger.info(
        "django_pg_real_pool: tasks of %r are bracketed (strict=%s); %s",
        app.main,
        _apps[app],
        "the bracket replaces the per-task database handlers of Celery's DjangoWorkerFixup, "
        "pools live as long as their worker process"
        if _took_over_fixup
        else "no Celery DjangoWorkerFixup to take over from",
    )


def _on_worker_process_init(**kwargs: Any) -> None:
    global last_process_init_seconds
    if not _apps:
        return
    from . import _bracket

    started = monotonic()
    # A prefork child's fork hook forgot the inherited connections without
    # I/O; this resets whatever else the forking thread's wrappers carried
    # (transaction flags, pins). Also runs for -P solo, in the main process.
    _bracket.check_and_repair(
        "worker_process_init", None, phase="when the worker process started (inherited)"
    )
    last_process_init_seconds = monotonic() - started


def _on_worker_process_shutdown(**kwargs: Any) -> None:
    _close_pools("worker process shutdown")


def _on_worker_shutdown(**kwargs: Any) -> None:
    _close_pools("worker shutdown")


def _close_pools(when: str) -> None:
    if not _apps:
        return
    from . import _bracket

    _bracket.close_pools()
    logger.info("django_pg_real_pool: pools of process %d closed at %s", os.getpid(), when)


def _unwrap(app: Any) -> Any:
    """The app behind a proxy such as ``current_app``."""
    get = getattr(app, "_get_current_object", None)
    return get() if get is not None else app
