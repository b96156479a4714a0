"""Settings of the dramatiq integration project, all from the environment.

The database, pool, ``application_name`` and leak log come from
:mod:`integrations._common.settings` (prefix ``DQ``: ``DQ_ENGINE``,
``DQ_POOL_MAX_SIZE`` / ``DQ_POOL_TIMEOUT``, ``DQ_APP_NAME``, ``DQ_LEAK_LOG``).
Besides those:

- ``DQ_REDIS_URL``: the Redis server of the broker and the result backend.
- ``DQ_DB_CONNECTIONS_MIDDLEWARE``: ``1`` adds django-dramatiq's
  ``DbConnectionsMiddleware`` (needed by the stock engine; redundant with
  ours). Default: ``1`` for stock, ``0`` for real.
- ``DQ_STRICT``: ``1`` sets ``REAL_POOL_STRICT`` (fail leaking messages).
- ``DQ_MIDDLEWARE_POSITION``: ``first`` (right, the default) or ``last``
  (wrong: what the system check reports).
"""

from __future__ import annotations

import os

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

ENGINE_KIND = common.engine_kind("DQ")
DATABASES = common.databases("DQ", app_name="pgrp-dramatiq")
LOGGING = common.leak_logging("DQ")
#: The model the shared leak actors write to.
NOTE_MODEL = "dq_app.Note"
REDIS_URL = os.environ.get("DQ_REDIS_URL", "redis://127.0.0.1:6379/0")

# django_pg_real_pool: its system checks (middleware position among them).
INSTALLED_APPS = ["django_pg_real_pool", "django_dramatiq", "dq_app"]
SECRET_KEY = "dramatiq-integration-only"
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
