"""Settings of the Django Tasks integration project, all from the environment.

Django Tasks with ``django-tasks-db``'s database backend and its
``db_worker`` (the ``django_tasks`` backport on Django 5.x).

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``TK_ENGINE``: ``real`` (django_pg_real_pool, the default) or ``stock``.
- ``TK_POOL_MAX_SIZE`` / ``TK_POOL_TIMEOUT``: pool size and wait (seconds).
- ``TK_APP_NAME``: ``application_name`` of the worker's sessions.
- ``TK_LEAK_LOG``: a file receiving the bracket's leak records as JSON lines.
- ``TK_HOOKED``: ``0`` leaves out the hook-up (what the system check reports).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])
ENGINE_KIND = os.environ.get("TK_ENGINE", "real")
if ENGINE_KIND not in ("real", "stock"):
    raise RuntimeError(f"TK_ENGINE is {ENGINE_KIND!r}; set it to 'real' or 'stock'.")

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django_pg_real_pool"
        if ENGINE_KIND == "real"
        else "django.db.backends.postgresql",
        "NAME": _dsn.get("dbname", "postgres"),
        "USER": _dsn.get("user", ""),
        "PASSWORD": _dsn.get("password", ""),
        "HOST": _dsn.get("host", ""),
        "PORT": str(_dsn.get("port", "")),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": os.environ.get("TK_APP_NAME", "pgrp-tasks"),
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("TK_POOL_MAX_SIZE", "4")),
                "timeout": float(os.environ.get("TK_POOL_TIMEOUT", "10")),
            },
        },
    }
}

_builtin = importlib.util.find_spec("django.tasks") is not None
INSTALLED_APPS = [
    "django_pg_real_pool",
    *([] if _builtin else ["django_tasks"]),
    "django_tasks_db",
    # The documented one-line hook-up.
    *(
        ["django_pg_real_pool.tasks.RealPoolTasksConfig"]
        if os.environ.get("TK_HOOKED", "1") == "1"
        else []
    ),
    "tk_app",
]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "tasks-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
if os.environ.get("TK_LEAK_LOG"):
    LOGGING["formatters"] = {"jsonl": {"()": "tk_app.logs.JsonLinesFormatter"}}
    LOGGING["handlers"] = {
        "leaks": {
            "class": "logging.FileHandler",
            "filename": os.environ["TK_LEAK_LOG"],
            "formatter": "jsonl",
        }
    }
    LOGGING["loggers"] = {
        "django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "WARNING"},
    }
