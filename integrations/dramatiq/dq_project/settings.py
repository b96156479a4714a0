"""Settings of the dramatiq integration project, all from the environment.

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``DQ_REDIS_URL``: the Redis server of the broker and the result backend.
- ``DQ_ENGINE``: ``real`` (django_pg_real_pool, the default) or ``stock``
  (Django's own backend on its native pool).
- ``DQ_POOL_MAX_SIZE`` / ``DQ_POOL_TIMEOUT``: pool size and wait (seconds).
- ``DQ_APP_NAME``: ``application_name`` of the worker's sessions, to find
  them in ``pg_stat_activity``.
- ``DQ_DB_CONNECTIONS_MIDDLEWARE``: ``1`` adds django-dramatiq's
  ``DbConnectionsMiddleware`` (needed by the stock engine; redundant with
  ours). Default: ``1`` for stock, ``0`` for real.
- ``DQ_LEAK_LOG``: a file receiving the bracket's leak records as JSON lines.
- ``DQ_STRICT``: ``1`` sets ``REAL_POOL_STRICT`` (fail leaking messages).
- ``DQ_MIDDLEWARE_POSITION``: ``first`` (right, the default) or ``last``
  (wrong: what the system check reports).
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])
ENGINE_KIND = os.environ.get("DQ_ENGINE", "real")
REDIS_URL = os.environ.get("DQ_REDIS_URL", "redis://127.0.0.1:6379/0")
_pool = {
    "min_size": 1,
    "max_size": int(os.environ.get("DQ_POOL_MAX_SIZE", "4")),
    "timeout": float(os.environ.get("DQ_POOL_TIMEOUT", "10")),
}

if ENGINE_KIND not in ("real", "stock"):
    raise RuntimeError(f"DQ_ENGINE is {ENGINE_KIND!r}; set it to 'real' or 'stock'.")

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
            "application_name": os.environ.get("DQ_APP_NAME", "pgrp-dramatiq"),
            "pool": _pool,
        },
    }
}

# django_pg_real_pool: its system checks (middleware position among them).
INSTALLED_APPS = ["django_pg_real_pool", "django_dramatiq", "dq_app"]
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "dramatiq-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REAL_POOL_STRICT = os.environ.get("DQ_STRICT") == "1"

_ours = ["django_pg_real_pool.dramatiq.RealPoolMiddleware"] if ENGINE_KIND == "real" else []
_last = os.environ.get("DQ_MIDDLEWARE_POSITION", "first") == "last"
_db_connections = os.environ.get(
    "DQ_DB_CONNECTIONS_MIDDLEWARE", "1" if ENGINE_KIND == "stock" else "0"
)

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": REDIS_URL},
    "MIDDLEWARE": [
        # FIRST: its after-hooks run last, after every other middleware's.
        *([] if _last else _ours),
        "dramatiq.middleware.AgeLimit",
        "dq_app.middleware.QuickTimeLimit",
        "dramatiq.middleware.ShutdownNotifications",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Pipelines",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.AdminMiddleware",
        "dq_app.middleware.LeakOnDelayedEnqueue",
        *(["django_dramatiq.middleware.DbConnectionsMiddleware"] if _db_connections == "1" else []),
        *(_ours if _last else []),
    ],
}
DRAMATIQ_RESULT_BACKEND = {
    "BACKEND": "dramatiq.results.backends.redis.RedisBackend",
    "BACKEND_OPTIONS": {"url": REDIS_URL},
    "MIDDLEWARE_OPTIONS": {"result_ttl": 600_000},
}

LOGGING: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
if os.environ.get("DQ_LEAK_LOG"):
    LOGGING["formatters"] = {"jsonl": {"()": "dq_app.logs.JsonLinesFormatter"}}
    LOGGING["handlers"] = {
        "leaks": {
            "class": "logging.FileHandler",
            "filename": os.environ["DQ_LEAK_LOG"],
            "formatter": "jsonl",
        }
    }
    LOGGING["loggers"] = {
        "django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "WARNING"},
    }
