"""Settings of the ASGI integration project, all from the environment.

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``ASGI_POOL_MAX_SIZE`` / ``ASGI_POOL_TIMEOUT``: pool size and wait (seconds).
- ``ASGI_APP_NAME``: ``application_name`` of the server's sessions, to find
  them in ``pg_stat_activity``.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django_pg_real_pool",
        "NAME": _dsn.get("dbname", "postgres"),
        "USER": _dsn.get("user", ""),
        "PASSWORD": _dsn.get("password", ""),
        "HOST": _dsn.get("host", ""),
        "PORT": str(_dsn.get("port", "")),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": os.environ.get("ASGI_APP_NAME", "pgrp-asgi"),
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("ASGI_POOL_MAX_SIZE", "4")),
                "timeout": float(os.environ.get("ASGI_POOL_TIMEOUT", "10")),
            },
        },
    }
}

INSTALLED_APPS = ["asgi_app"]
ROOT_URLCONF = "asgi_project.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIDDLEWARE: list[str] = []
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "asgi-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pg_real_pool": {"handlers": ["console"], "level": "WARNING"}},
}
