"""Settings of the ASGI integration project, all from the environment.

The database and pool come from :mod:`integrations._common.settings` (prefix
``ASGI``; ``ASGI_ENGINE`` defaults to ``real``):

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``ASGI_POOL_MAX_SIZE`` / ``ASGI_POOL_TIMEOUT``: pool size and wait (seconds).
- ``ASGI_APP_NAME``: ``application_name`` of the server's sessions, to find
  them in ``pg_stat_activity``.
"""

from __future__ import annotations

from typing import Any

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

DATABASES = common.databases("ASGI", app_name="pgrp-asgi")

INSTALLED_APPS = ["asgi_app"]
ROOT_URLCONF = "asgi_project.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIDDLEWARE: list[str] = []
DEBUG = False
SECRET_KEY = "asgi-integration-only"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pg_real_pool": {"handlers": ["console"], "level": "WARNING"}},
}
