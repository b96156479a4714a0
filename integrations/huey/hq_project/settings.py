"""Settings of the huey integration project, all from the environment.

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``HQ_REDIS_URL``: the Redis server of huey's queue and result store.
- ``HQ_ENGINE``: ``real`` (django_pg_real_pool, the default) or ``stock``.
- ``HQ_POOL_MAX_SIZE`` / ``HQ_POOL_TIMEOUT``: pool size and wait (seconds).
- ``HQ_APP_NAME``: ``application_name`` of the worker's sessions.
- ``HQ_LEAK_LOG``: a file receiving the bracket's leak records as JSON lines.
- ``HQ_HOOKED``: ``0`` leaves out the hook-up (what the system check reports).
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])
ENGINE_KIND = os.environ.get("HQ_ENGINE", "real")
if ENGINE_KIND not in ("real", "stock"):
    raise RuntimeError(f"HQ_ENGINE is {ENGINE_KIND!r}; set it to 'real' or 'stock'.")

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
            "application_name": os.environ.get("HQ_APP_NAME", "pgrp-huey"),
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("HQ_POOL_MAX_SIZE", "4")),
                "timeout": float(os.environ.get("HQ_POOL_TIMEOUT", "10")),
            },
        },
    }
}

INSTALLED_APPS = ["django_pg_real_pool", "huey.contrib.djhuey", "hq_app"]
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "huey-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": "pgrp-huey",
    "url": os.environ.get("HQ_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "immediate": False,
    "results": True,
    "store_none": True,
}

LOGGING: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
if os.environ.get("HQ_LEAK_LOG"):
    LOGGING["formatters"] = {"jsonl": {"()": "hq_app.logs.JsonLinesFormatter"}}
    LOGGING["handlers"] = {
        "leaks": {
            "class": "logging.FileHandler",
            "filename": os.environ["HQ_LEAK_LOG"],
            "formatter": "jsonl",
        }
    }
    LOGGING["loggers"] = {
        "django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "WARNING"},
    }
