"""Django settings for the test suite, built around the test server's DSN."""

from __future__ import annotations

from typing import Any

from tests.support.pgserver import settings_from_dsn


def database(
    engine: str, dsn: str, application: str, pool_size: int = 4, **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"ENGINE": engine, **settings_from_dsn(dsn), "CONN_MAX_AGE": 0}
    entry["OPTIONS"] = {"application_name": f"pgrp-{application}"}
    if engine == "django_pg_real_pool":
        entry["OPTIONS"]["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 5}
    elif engine == "django_pg_real_pool.dj_db_conn_pool":
        entry["POOL_OPTIONS"] = {"POOL_SIZE": pool_size, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    entry.update(extra)
    return entry


def replaying(entry: dict[str, Any]) -> dict[str, Any]:
    entry["OPTIONS"]["real_pool"] = {"replay": ["search_path", "role", "app.*"]}
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
            # One connection each: consecutive borrowers provably share a backend.
            "single": database(
                "django_pg_real_pool", dsn, "single", TEST={"MIRROR": "default"}, pool_size=1
            ),
            "single_dj": database(
                "django_pg_real_pool.dj_db_conn_pool",
                dsn,
                "single_dj",
                TEST={"MIRROR": "default"},
                pool_size=1,
            ),
            # With the replay option (#18; named to sort after the others, as
            # pool_status lists them): one connection each, and four for
            # the row-level security fuzz.
            **{
                alias: replaying(
                    database(engine, dsn, alias, TEST={"MIRROR": "default"}, pool_size=size)
                )
                for alias, engine, size in (
                    ("tenant_replay", "django_pg_real_pool", 1),
                    ("tenant_replay_dj", "django_pg_real_pool.dj_db_conn_pool", 1),
                    ("tenant_rls", "django_pg_real_pool", 4),
                    ("tenant_rls_dj", "django_pg_real_pool.dj_db_conn_pool", 4),
                )
            },
        },
        "INSTALLED_APPS": ["tests.testapp"],
        "USE_TZ": True,
        "TIME_ZONE": "Europe/Paris",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "SECRET_KEY": "test-only",
        "LOGGING_CONFIG": None,
    }
