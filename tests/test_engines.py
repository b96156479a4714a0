"""Engine identity: composed and user engines count as this package's engines
everywhere (system checks, telemetry, ``pool_status``), with the right pool."""

from __future__ import annotations

import copy
import json
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import load_backend
from django.test import override_settings
from django.test.utils import modify_settings

from django_pg_real_pool import _engines, checks, telemetry
from tests.support.aliases import extra_alias
from tests.support.pgstat import sessions, wait_until

# Composed engines that need no optional package, so that these tests run in
# every environment (the ready .postgis/.tenants/.prometheus engines are
# exercised end to end in integrations/composed).
USER_ENGINE = "tests.support.userengine"
USER_ENGINE_NATIVE = "tests.support.userengine_native"


@pytest.mark.parametrize(
    ("engine", "kind"),
    [
        ("django_pg_real_pool", "native"),
        (USER_ENGINE_NATIVE, "native"),
        ("django_pg_real_pool.dj_db_conn_pool", "dj_db_conn_pool"),
        (USER_ENGINE, "dj_db_conn_pool"),
        ("django.db.backends.postgresql", None),
        ("django.db.backends.sqlite3", None),
        ("no.such.backend", None),
    ],
)
def test_pool_kind_of_each_engine(engine: str, kind: str | None) -> None:
    assert _engines.pool_kind_of_engine(engine) == kind


def test_pool_status_lists_a_composed_alias_with_its_pool(admin: psycopg.Connection[Any]) -> None:
    engine = USER_ENGINE
    settings_dict = copy.deepcopy(connections.settings["djpool"])
    settings_dict.update(ENGINE=engine, OPTIONS={"application_name": "pgrp-composed_dj"})
    # The query runs before the alias is in settings: pytest-django forbids a
    # configured alias that the test's databases did not name.
    wrapper = load_backend(engine).DatabaseWrapper(settings_dict, "composed_dj")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        with (
            modify_settings(INSTALLED_APPS={"append": "django_pg_real_pool"}),
            extra_alias("composed_dj", "djpool", ENGINE=engine),
        ):
            out = StringIO()
            call_command("pool_status", "--json", stdout=out)
            data = json.loads(out.getvalue())
            snapshot = telemetry.snapshot()["composed_dj"]
    finally:
        wrapper.close()
        wrapper.close_pool()
    assert "composed_dj" in data["pools"]
    pool = data["pools"]["composed_dj"]
    assert pool[telemetry.ENGINE] == snapshot[telemetry.ENGINE] == _engines.QUEUEPOOL_ENGINE
    assert pool[telemetry.CONNECTION_COUNT] == {"idle": 1, "used": 0}
    # The server's view, as the command shows it: the alias's one session.
    assert [row["pid"] for row in data["server"]["composed_dj"]] == [pid]
    # close_pool() ended it on the server too.
    assert wait_until(lambda: sessions(admin, "composed_dj") == [], timeout=5)


def test_app_check_covers_a_user_engine_alias() -> None:
    with extra_alias("mine", "djpool", ENGINE=USER_ENGINE, CONN_MAX_AGE=60):
        ids = {(m.obj, m.id) for m in checks.check_databases()}
        assert ("DATABASES['mine']", "django_pg_real_pool.E001") in ids


# Only settings.DATABASES is read by the runner checks; connections is untouched.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_runner_check_fires_when_the_only_alias_is_composed() -> None:
    from django_pg_real_pool import tasks

    saved = set(tasks._connected)
    tasks._connected.clear()
    only = {"default": {**connections.settings["default"], "ENGINE": USER_ENGINE}}
    worker = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    try:
        with override_settings(DATABASES=only, TASKS=worker):
            ids = [m.id for m in checks.check_integrations()]
        assert "django_pg_real_pool.W501" in ids
    finally:
        tasks._connected.update(saved)
