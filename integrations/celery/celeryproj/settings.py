"""Settings of the Celery example project, all from the environment.

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

import psycopg
from django.core.exceptions import ImproperlyConfigured

_dsn_text = os.environ.get("DJANGO_PG_REAL_POOL_TEST_DSN")
if not _dsn_text:
    raise ImproperlyConfigured(
        "Set DJANGO_PG_REAL_POOL_TEST_DSN to the server's libpq DSN, e.g. "
        "'host=127.0.0.1 port=5432 user=postgres dbname=celery_demo'."
    )
_dsn = psycopg.conninfo.conninfo_to_dict(_dsn_text)
_engine = os.environ.get("PGRP_CELERY_ENGINE", "real")
_pool = {"min_size": 1, "max_size": int(os.environ.get("PGRP_CELERY_MAX_SIZE", "4")), "timeout": 10}

SECRET_KEY = "celery-example-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["celeryjobs"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django_pg_real_pool" if _engine == "real" else "django.db.backends.postgresql",
        "NAME": _dsn.get("dbname", "postgres"),
        "USER": _dsn.get("user", ""),
        "PASSWORD": _dsn.get("password", ""),
        "HOST": _dsn.get("host", ""),
        "PORT": str(_dsn.get("port", "")),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": os.environ.get("PGRP_CELERY_APP_NAME", "pgrp-celery"),
            "pool": _pool,
        },
    }
}

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
