"""The settings every task-queue project reads from its environment.

A project's ``settings.py`` calls these with its own variable prefix (``HQ``,
``RQP``, ...) and adds its queue's few lines. For a prefix ``P``:

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``P_ENGINE``: ``real`` (django_pg_real_pool, the default) or ``stock``
  (Django's own backend on its native pool).
- ``P_POOL_MAX_SIZE`` / ``P_POOL_TIMEOUT``: pool size and wait (seconds).
- ``P_APP_NAME``: ``application_name`` of the worker's sessions, to find
  them in ``pg_stat_activity``.
- ``P_LEAK_LOG``: a file receiving the bracket's leak records as JSON lines.
- ``P_REPLAY``: ``1`` turns on ``OPTIONS["real_pool"]["replay"]`` (``search_path``,
  ``role``, ``app.*``) on the real engine: plain ``SET``s become the task's
  context, replayed on each borrow (the tenant-per-message cases).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict

DSN_ENV = "DJANGO_PG_REAL_POOL_TEST_DSN"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ENGINES = {"real": "django_pg_real_pool", "stock": "django.db.backends.postgresql"}


def engine_kind(prefix: str) -> str:
    """``P_ENGINE``: ``real`` or ``stock``."""
    kind = os.environ.get(f"{prefix}_ENGINE", "real")
    if kind not in ENGINES:
        raise ImproperlyConfigured(f"{prefix}_ENGINE is {kind!r}; set it to 'real' or 'stock'.")
    return kind


def databases(
    prefix: str, *, app_name: str, max_size_env: str = "", timeout_env: str = ""
) -> dict[str, Any]:
    """``DATABASES`` with one ``default`` alias on the pool of ``P_ENGINE``.

    ``max_size_env`` / ``timeout_env`` name other variables than
    ``P_POOL_MAX_SIZE`` / ``P_POOL_TIMEOUT`` (the Celery project's names).
    """
    text = os.environ.get(DSN_ENV)
    if not text:
        raise ImproperlyConfigured(
            f"Set {DSN_ENV} to the server's libpq DSN, e.g. "
            "'host=127.0.0.1 port=5432 user=postgres dbname=demo'."
        )
    dsn = conninfo_to_dict(text)
    max_size = os.environ.get(max_size_env or f"{prefix}_POOL_MAX_SIZE", "4")
    timeout = os.environ.get(timeout_env or f"{prefix}_POOL_TIMEOUT", "10")
    options: dict[str, Any] = {
        "application_name": os.environ.get(f"{prefix}_APP_NAME", app_name),
        "pool": {"min_size": 1, "max_size": int(max_size), "timeout": float(timeout)},
    }
    if os.environ.get(f"{prefix}_REPLAY") == "1" and engine_kind(prefix) == "real":
        options["real_pool"] = {"replay": ["search_path", "role", "app.*"]}
    return {
        "default": {
            "ENGINE": ENGINES[engine_kind(prefix)],
            "NAME": dsn.get("dbname", "postgres"),
            "USER": dsn.get("user", ""),
            "PASSWORD": dsn.get("password", ""),
            "HOST": dsn.get("host", ""),
            "PORT": str(dsn.get("port", "")),
            "CONN_MAX_AGE": 0,
            "OPTIONS": options,
        }
    }


def leak_logging(prefix: str) -> dict[str, Any]:
    """``LOGGING``: the bracket's leak records to ``P_LEAK_LOG`` as JSON lines
    (see :mod:`integrations._common.logs`), when that variable is set."""
    logging: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
    path = os.environ.get(f"{prefix}_LEAK_LOG")
    if path:
        logging["formatters"] = {"jsonl": {"()": "integrations._common.logs.JsonLinesFormatter"}}
        logging["handlers"] = {
            "leaks": {"class": "logging.FileHandler", "filename": path, "formatter": "jsonl"}
        }
        logging["loggers"] = {
            "django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "WARNING"},
        }
    return logging
