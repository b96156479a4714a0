"""Settings of the composed-engine project, all from the environment.

- ``DJANGO_PG_REAL_POOL_TEST_DSN``: libpq DSN of the database (required).
- ``COMPOSED_BACKEND``: ``postgis``, ``tenants`` or ``prometheus``.
- ``COMPOSED_POOL``: ``native`` (Django's pool) or ``dj`` (django-db-connection-pool).
- ``COMPOSED_APP_NAME``: ``application_name`` of the pool's sessions.
- ``COMPOSED_POOL_SIZE``: the pool's size (default 4).
- ``COMPOSED_REPLAY``: ``1`` turns on ``OPTIONS["real_pool"]["replay"]``
  (``search_path``, ``role``, ``app.*``): plain ``SET``s become the context's
  state, replayed on each borrow (issue 18).
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

BACKEND = os.environ.get("COMPOSED_BACKEND", "postgis")
POOL = os.environ.get("COMPOSED_POOL", "native")
APP_NAME = os.environ.get("COMPOSED_APP_NAME", "pgrp-composed")
POOL_SIZE = int(os.environ.get("COMPOSED_POOL_SIZE", "4"))

_dsn = conninfo_to_dict(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"])
_database: dict[str, Any] = {
    "ENGINE": (
        f"django_pg_real_pool.{BACKEND}"
        if POOL == "native"
        else f"django_pg_real_pool.dj_db_conn_pool.{BACKEND}"
    ),
    "NAME": _dsn.get("dbname", "postgres"),
    "USER": _dsn.get("user", ""),
    "PASSWORD": _dsn.get("password", ""),
    "HOST": _dsn.get("host", ""),
    "PORT": str(_dsn.get("port", "")),
    "CONN_MAX_AGE": 0,
    "OPTIONS": {"application_name": APP_NAME},
}
if POOL == "native":
    _database["OPTIONS"]["pool"] = {"min_size": 1, "max_size": POOL_SIZE, "timeout": 30}
else:
    _database["POOL_OPTIONS"] = {"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": 0, "TIMEOUT": 30}
if os.environ.get("COMPOSED_REPLAY") == "1":
    _database["OPTIONS"]["real_pool"] = {"replay": ["search_path", "role", "app.*"]}
DATABASES: dict[str, Any] = {"default": _database}

INSTALLED_APPS: list[str] = ["django.contrib.contenttypes"]
if BACKEND == "postgis":
    INSTALLED_APPS += ["django.contrib.gis", "integrations.composed.geo_app"]
elif BACKEND == "tenants":
    SHARED_APPS = ["django_tenants", "integrations.composed.tenant_app"]
    TENANT_APPS = ["django.contrib.contenttypes", "integrations.composed.notes_app"]
    INSTALLED_APPS = ["django_tenants", "django.contrib.contenttypes"]
    INSTALLED_APPS += ["integrations.composed.tenant_app", "integrations.composed.notes_app"]
    TENANT_MODEL = "tenant_app.Client"
    TENANT_DOMAIN_MODEL = "tenant_app.Domain"
    DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
    TENANT_LIMIT_SET_CALLS = os.environ.get("COMPOSED_LIMIT_SET_CALLS") == "1"
    # The web project (tests/test_tenants_web.py): django-tenants picks the
    # tenant from the Host header, served by gunicorn's threads (wsgi.py).
    MIDDLEWARE = ["django_tenants.middleware.main.TenantMainMiddleware"]
    ROOT_URLCONF = "integrations.composed.urls"
    ALLOWED_HOSTS = [".localhost"]
elif BACKEND == "prometheus":
    INSTALLED_APPS += ["django_prometheus", "integrations.composed.notes_app"]

USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "composed-integration-only"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
