"""Settings of the RQ integration project (django-rq), all from the environment.

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``RQP_REDIS_URL``: the Redis server of the queue and the results.
- ``RQP_ENGINE``: ``real`` (django_pg_real_pool, the default) or ``stock``.
- ``RQP_POOL_MAX_SIZE`` / ``RQP_POOL_TIMEOUT``: pool size and wait (seconds).
- ``RQP_APP_NAME``: ``application_name`` of the worker's sessions.
- ``RQP_LEAK_LOG``: a file receiving the bracket's leak records as JSON lines.
- ``RQP_WORKER_CLASS``: ``RQ["WORKER_CLASS"]`` (default: this package's
  forking worker; ``rq.worker.Worker`` is what the system check reports).
- ``RQP_PARENT_LOG``: a file the parent-probing worker class appends the
  parent's backend pid to, before each fork.
- ``RQP_FAULTHANDLER``: ``1`` dumps every thread's stack on SIGUSR2 (to find
  where a worker hangs).
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])
ENGINE_KIND = os.environ.get("RQP_ENGINE", "real")
if ENGINE_KIND not in ("real", "stock"):
    raise RuntimeError(f"RQP_ENGINE is {ENGINE_KIND!r}; set it to 'real' or 'stock'.")

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
            "application_name": os.environ.get("RQP_APP_NAME", "pgrp-rq"),
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("RQP_POOL_MAX_SIZE", "4")),
                "timeout": float(os.environ.get("RQP_POOL_TIMEOUT", "10")),
            },
        },
    }
}

INSTALLED_APPS = ["django_pg_real_pool", "django_rq", "rq_app"]
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "rq-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

RQ_QUEUES = {"default": {"URL": os.environ.get("RQP_REDIS_URL", "redis://127.0.0.1:6379/0")}}
# The documented one-line hook-up.
RQ = {"WORKER_CLASS": os.environ.get("RQP_WORKER_CLASS", "django_pg_real_pool.rq.RealPoolWorker")}

LOGGING: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
if os.environ.get("RQP_LEAK_LOG"):
    LOGGING["formatters"] = {"jsonl": {"()": "rq_app.logs.JsonLinesFormatter"}}
    LOGGING["handlers"] = {
        "leaks": {
            "class": "logging.FileHandler",
            "filename": os.environ["RQP_LEAK_LOG"],
            "formatter": "jsonl",
        }
    }
    LOGGING["loggers"] = {
        "django_pg_real_pool.bracket": {"handlers": ["leaks"], "level": "WARNING"},
    }

if os.environ.get("RQP_FAULTHANDLER"):
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR2, all_threads=True)
