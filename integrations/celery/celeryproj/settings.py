"""Settings of the Celery example project, all from the environment.

The database and pool come from :mod:`integrations._common.settings` (prefix
``PGRP_CELERY``, pool size in ``PGRP_CELERY_MAX_SIZE``, timeout 10 s):

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: the PostgreSQL server (libpq DSN).
- ``PGRP_CELERY_BROKER_URL``: the Redis broker (also the result backend).
- ``PGRP_CELERY_ENGINE``: ``real`` (django_pg_real_pool, default) or ``stock``
  (Django's postgresql backend with its native pool), for benchmarks.
- ``PGRP_CELERY_MAX_SIZE``: the pool's ``max_size`` (default 4).
- ``PGRP_CELERY_APP_NAME``: ``application_name`` of the sessions.
- ``PGRP_CELERY_STRICT``: ``1`` turns strict mode on.
- ``PGRP_CELERY_LEAK_LOG``: a file that receives the bracket's records as JSON
  lines (tests read it).
"""

import os

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

SECRET_KEY = "celery-example-only"
DEBUG = False
INSTALLED_APPS = ["celeryjobs"]
DATABASES = common.databases(
    "PGRP_CELERY", app_name="pgrp-celery", max_size_env="PGRP_CELERY_MAX_SIZE"
)

REAL_POOL_STRICT = os.environ.get("PGRP_CELERY_STRICT") == "1"

CELERY_BROKER_URL = os.environ.get("PGRP_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

_leak_log = os.environ.get("PGRP_CELERY_LEAK_LOG")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "celeryjobs.logjson.JsonFormatter"}},
    "handlers": (
        {"leaks": {"class": "logging.FileHandler", "filename": _leak_log, "formatter": "json"}}
        if _leak_log
        else {}
    ),
    "loggers": (
        {"django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "INFO"}}
        if _leak_log
        else {}
    ),
}
