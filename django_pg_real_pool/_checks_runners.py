"""The task runners' system checks: is each installed runner hooked up?

One function per runner (dramatiq ``E101``/``E102``/``W103``, Celery
``W201``, huey ``W301``, RQ ``W401``, Django Tasks ``W501``), run by
:func:`django_pg_real_pool.checks.check_integrations` only when the runner's
package is importable. They live here, with the other checks, so the queue
adapters (``dramatiq.py``, ``celery.py``, ...) keep only their queue's hooks;
each imports its adapter lazily, for the adapter's classes and state.
Every check stays silent when no alias runs this package's engines
(:func:`django_pg_real_pool._engines.any_ours`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.core.checks import CheckMessage, Error, Warning

from ._engines import any_ours

#: Check ids of the runners' "installed but not hooked up" warnings.
CELERY_NOT_INSTALLED = "django_pg_real_pool.W201"
HUEY_NOT_INSTALLED = "django_pg_real_pool.W301"
RQ_NOT_HOOKED = "django_pg_real_pool.W401"
TASKS_NOT_HOOKED = "django_pg_real_pool.W501"


def dramatiq_messages() -> list[CheckMessage]:
    """Report the middleware missing, duplicated or not first (for Django's checks).

    Looks at ``settings.DRAMATIQ_BROKER["MIDDLEWARE"]`` when django-dramatiq
    is configured, at the global dramatiq broker otherwise. Says nothing when
    dramatiq is not installed or not configured, or when no alias uses this
    engine.
    """
    from django.conf import settings

    try:
        import dramatiq.broker
    except ImportError:
        return []
    from .dramatiq import MIDDLEWARE_PATH

    if not any_ours():
        return []
    entries: list[Any]
    if hasattr(settings, "DRAMATIQ_BROKER"):
        entries = list(settings.DRAMATIQ_BROKER.get("MIDDLEWARE", []))
        where = "settings.DRAMATIQ_BROKER['MIDDLEWARE']"
        fix = f"put {MIDDLEWARE_PATH!r} first in {where}"
    elif "django_dramatiq" in settings.INSTALLED_APPS:
        from django_dramatiq.apps import DEFAULT_BROKER_SETTINGS

        entries = list(DEFAULT_BROKER_SETTINGS["MIDDLEWARE"])
        where = "django-dramatiq's default middleware (settings.DRAMATIQ_BROKER is not set)"
        fix = (
            "set settings.DRAMATIQ_BROKER with a 'MIDDLEWARE' list whose first entry is "
            f"{MIDDLEWARE_PATH!r}"
        )
    elif dramatiq.broker.global_broker is not None:
        # Read the global directly: dramatiq.get_broker() would create one.
        entries = list(dramatiq.broker.global_broker.middleware)
        where = "the dramatiq broker's middleware"
        first = type(entries[0]).__name__ if entries else None
        fix = (
            "add it first: broker.add_middleware(RealPoolMiddleware(), before="
            f"{first}) or pass it first in Broker(middleware=[RealPoolMiddleware(), ...])"
            if first
            else "broker.add_middleware(RealPoolMiddleware())"
        )
    else:
        return []

    names = [_describe(entry) for entry in entries]
    positions = [i for i, entry in enumerate(entries) if _is_ours(entry)]
    messages: list[CheckMessage] = []
    if not positions:
        messages.append(
            Error(
                f"The dramatiq middleware of django_pg_real_pool is missing from {where}: "
                "connections that tasks leave held or inside a transaction are neither "
                "repaired nor reported.",
                hint=f"To fix: {fix}.",
                id="django_pg_real_pool.E101",
            )
        )
        return messages
    if len(positions) > 1:
        messages.append(
            Error(
                f"The dramatiq middleware of django_pg_real_pool is listed {len(positions)} "
                f"times in {where} (positions {positions}).",
                hint=f"To fix: keep only the first entry; {fix}.",
                id="django_pg_real_pool.E102",
            )
        )
    if positions[0] != 0:
        before = ", ".join(names[: positions[0]])
        messages.append(
            Warning(
                f"The dramatiq middleware of django_pg_real_pool is at position {positions[0]} "
                f"in {where}, after {before}: their after-hooks (and TimeLimit's disarm) run "
                "after its end-of-message check, so what they do on the database escapes it.",
                hint=f"To fix: {fix}.",
                id="django_pg_real_pool.W103",
            )
        )
    return messages


def _middleware_class(entry: Any) -> type | None:
    if isinstance(entry, str):
        from django.utils.module_loading import import_string

        try:
            found = import_string(entry)
        except ImportError:
            return None
        return found if isinstance(found, type) else None
    return entry if isinstance(entry, type) else type(entry)


def _is_ours(entry: Any) -> bool:
    from .dramatiq import RealPoolMiddleware

    cls = _middleware_class(entry)
    return cls is not None and issubclass(cls, RealPoolMiddleware)


def _describe(entry: Any) -> str:
    if isinstance(entry, str):
        return entry.rsplit(".", 1)[-1]
    cls = _middleware_class(entry)
    return cls.__name__ if cls is not None else repr(entry)


def celery_messages() -> list[CheckMessage]:
    """W201 when a Celery app exists in this process but ``install()`` never ran.

    Only apps created in the process running the check are seen: the usual
    ``from .celery import app as celery_app`` in the project's ``__init__.py``
    makes ``manage.py check`` see it. Celery is not imported here: if nothing
    imported it, no app exists.
    """
    state = sys.modules.get("celery._state")
    if state is None:
        return []
    from .celery import installed_anywhere

    apps = [app for app in list(state._get_active_apps()) if not _is_fallback_app(app)]
    if not apps or installed_anywhere():
        return []
    names = ", ".join(sorted(repr(app.main) for app in apps))
    return [
        Warning(
            f"Celery is installed and an app is configured ({names}) but "
            "django_pg_real_pool.celery.install() was never called in this process: "
            "tasks are not bracketed (a leaked transaction or connection is neither "
            "repaired nor reported), and under prefork Celery closes the pool at every "
            "task boundary.",
            hint="Call django_pg_real_pool.celery.install(app) in the module that "
            "creates the Celery app, right after Celery(...).",
            id=CELERY_NOT_INSTALLED,
        )
    ]


def _is_fallback_app(app: Any) -> bool:
    # celery._state creates Celery("default", fixups=[]) on first use of
    # current_app when no app exists: not one the user configured.
    return bool(app.main == "default" and not app.fixups)


def huey_messages() -> list[CheckMessage]:
    """W301 when django-huey is configured but its instance is not hooked up.

    Looks at ``huey.contrib.djhuey.HUEY`` when ``huey.contrib.djhuey`` is in
    ``INSTALLED_APPS`` (the instance ``run_huey`` uses). A ``Huey`` created
    outside django-huey cannot be found here.
    """
    from django.conf import settings

    if "huey.contrib.djhuey" not in settings.INSTALLED_APPS:
        return []
    if not any_ours():
        return []
    from huey.contrib.djhuey import HUEY

    from .huey import is_installed

    if is_installed(HUEY):
        return []
    return [
        Warning(
            f"huey is configured (django-huey, instance {HUEY.name!r}) but "
            "django_pg_real_pool.huey.install() was never called for it: tasks are not "
            "bracketed (a leaked transaction or connection is neither repaired nor "
            "reported).",
            hint="In an AppConfig.ready(): from huey.contrib.djhuey import HUEY; "
            "django_pg_real_pool.huey.install(HUEY).",
            id=HUEY_NOT_INSTALLED,
        )
    ]


def rq_messages() -> list[CheckMessage]:
    """W401 when django-rq is installed and its worker class lacks the bracket.

    Reads ``settings.RQ["WORKER_CLASS"]`` (django-rq's default: RQ's
    ``Worker``). A ``--worker-class`` given on the command line is not seen
    here: set it in the setting instead, so that every ``rqworker`` uses it.
    """
    from django.conf import settings

    if "django_rq" not in settings.INSTALLED_APPS:
        return []
    if not any_ours():
        return []
    from rq.worker import Worker

    from .rq import WORKER_CLASS_PATH, RealPoolWorkerMixin

    configured = getattr(settings, "RQ", {}).get("WORKER_CLASS", Worker)
    if isinstance(configured, str):
        from django.utils.module_loading import import_string

        try:
            configured = import_string(configured)
        except ImportError:
            return []  # django-rq reports it when a worker starts
    if isinstance(configured, type) and issubclass(configured, RealPoolWorkerMixin):
        return []
    name = getattr(configured, "__qualname__", repr(configured))
    return [
        Warning(
            f"django-rq is installed and its worker class is {name}, which does not run "
            "jobs inside django_pg_real_pool's task bracket: a leaked transaction or "
            "connection is neither repaired nor reported.",
            hint=f'Set RQ = {{"WORKER_CLASS": "{WORKER_CLASS_PATH}"}} (or '
            "django_pg_real_pool.rq.RealPoolSimpleWorker; to keep a custom worker class, "
            "derive it from django_pg_real_pool.rq.RealPoolWorkerMixin first).",
            id=RQ_NOT_HOOKED,
        )
    ]


def tasks_messages() -> list[CheckMessage]:
    """W501 when ``settings.TASKS`` names a worker backend but nothing connected the bracket.

    Backends that run tasks in their caller or never (``ImmediateBackend``,
    ``DummyBackend``) need no bracket and are not reported.
    """
    from django.conf import settings

    from .tasks import APP_CONFIG_PATH, IN_CALLER_BACKENDS, is_connected

    if is_connected():
        return []
    if not any_ours():
        return []
    tasks = getattr(settings, "TASKS", None) or {}
    workers = sorted(
        alias
        for alias, config in tasks.items()
        if str(config.get("BACKEND", "")).rsplit(".", 1)[-1] not in IN_CALLER_BACKENDS
    )
    if not workers:
        return []
    return [
        Warning(
            f"settings.TASKS configures worker backend(s) {', '.join(map(repr, workers))} but "
            "django_pg_real_pool's Django Tasks hook-up is not installed: tasks are not "
            "bracketed (a leaked transaction or connection is neither repaired nor reported).",
            hint=f"Add {APP_CONFIG_PATH!r} to INSTALLED_APPS (the path of the app config "
            "class, not of its module).",
            id=TASKS_NOT_HOOKED,
        )
    ]


#: (our adapter module, the third-party package it needs, its check): the
#: check runs only when that package is importable.
RUNNER_CHECKS: tuple[tuple[str, str, Callable[[], list[CheckMessage]]], ...] = (
    ("django_pg_real_pool.dramatiq", "dramatiq", dramatiq_messages),
    ("django_pg_real_pool.celery", "celery", celery_messages),
    ("django_pg_real_pool.huey", "huey", huey_messages),
    ("django_pg_real_pool.rq", "django_rq", rq_messages),
    # Django Tasks: built in from Django 6.0, the django_tasks backport before.
    ("django_pg_real_pool.tasks", "django", tasks_messages),
)
