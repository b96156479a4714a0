"""Settings of the demo shop. The runner (``run.py``) sets the environment:

* ``DEMO_DSN``: libpq DSN of the demo database (required);
* ``DEMO_ENGINE``: ``real`` (django_pg_real_pool, default) or ``stock``
  (Django's own PostgreSQL backend on its native pool);
* ``DEMO_POOL_SIZE`` (4), ``DEMO_POOL_TIMEOUT`` (seconds, 10), ``DEMO_WORK_MS`` (50).

Both engines get the very same pool: min_size = max_size = DEMO_POOL_SIZE.
"""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

ENGINES = {
    "stock": "django.db.backends.postgresql",
    "real": "django_pg_real_pool",
}

DEMO_ENGINE = os.environ.get("DEMO_ENGINE", "real")
_DSN = conninfo_to_dict(os.environ["DEMO_DSN"])
DEMO_WORK_MS = float(os.environ.get("DEMO_WORK_MS", "50"))
_POOL_SIZE = int(os.environ.get("DEMO_POOL_SIZE", "4"))

DATABASES = {
    "default": {
        "ENGINE": ENGINES[DEMO_ENGINE],
        "NAME": _DSN.get("dbname", "postgres"),
        "USER": _DSN.get("user", ""),
        "PASSWORD": _DSN.get("password", ""),
        "HOST": _DSN.get("host", ""),
        "PORT": str(_DSN.get("port", "")),
        # Both engines: the pool keeps connections open; Django must not.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": f"pgrp-demo-{DEMO_ENGINE}",
            "pool": {
                "min_size": _POOL_SIZE,
                "max_size": _POOL_SIZE,
                "timeout": float(os.environ.get("DEMO_POOL_TIMEOUT", "10")),
            },
        },
    }
}

SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["examples.demo.shop"]
if DEMO_ENGINE == "real":
    # The engine's system checks and `manage.py pool_status`.
    INSTALLED_APPS.append("django_pg_real_pool")
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "examples.demo.shop.middleware.PoolTimeoutMiddleware",
]
ROOT_URLCONF = "examples.demo.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
