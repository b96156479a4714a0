"""Django settings for the test suite, built around the test server's DSN."""

from __future__ import annotations

from typing import Any

from tests.support.pgserver import settings_from_dsn


def database(engine: str, dsn: str, application: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"ENGINE": engine, **settings_from_dsn(dsn), "CONN_MAX_AGE": 0}
    entry["OPTIONS"] = {"application_name": f"pgrp-{application}"}
    if engine == "django_pg_real_pool":
        entry["OPTIONS"]["pool"] = {"min_size": 1, "max_size": 4, "timeout": 5}
    elif engine == "django_pg_real_pool.dj_db_conn_pool":
        entry["POOL_OPTIONS"] = {"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    entry.update(extra)
    return entry


def build(dsn: str) -> dict[str, Any]:
    return {
        "DATABASES": {
            # One alias per engine, mirrors of one test database.
            "default": database("django_pg_real_pool", dsn, "default"),
            "djpool": database(
                "django_pg_real_pool.dj_db_conn_pool", dsn, "djpool", TEST={"MIRROR": "default"}
            ),
            "other": database("django_pg_real_pool", dsn, "other", TEST={"MIRROR": "default"}),
        },
        "INSTALLED_APPS": ["tests.testapp"],
        "USE_TZ": True,
        "TIME_ZONE": "Europe/Paris",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "SECRET_KEY": "test-only",
        "LOGGING_CONFIG": None,
    }
