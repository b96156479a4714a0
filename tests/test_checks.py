"""System checks: stable ids, hints that name the fix, reachable with and without the app."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.db import connections
from django.test.utils import modify_settings

from django_pg_real_pool import checks
from django_pg_real_pool.checks import check_alias
from tests.support.pgserver import DSN_ENV

ROOT = Path(__file__).resolve().parent.parent
NATIVE = "django_pg_real_pool"
QUEUEPOOL = "django_pg_real_pool.dj_db_conn_pool"


def entry(engine: str = NATIVE, **changes: Any) -> dict[str, Any]:
    """A valid DATABASES entry, then ``changes`` (OPTIONS merged)."""
    base: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": "app",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0,
        "AUTOCOMMIT": True,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 5}}
        if engine == NATIVE
        else {},
    }
    if engine == QUEUEPOOL:
        base["POOL_OPTIONS"] = {"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    options = changes.pop("OPTIONS", None)
    base.update(changes)
    if options is not None:
        base["OPTIONS"] = {**base["OPTIONS"], **options}
    return base


def ids(messages: list[Any]) -> list[str]:
    return [m.id.removeprefix("django_pg_real_pool.") for m in messages]


CASES = [
    ("valid native", entry(), []),
    ("valid queuepool", entry(QUEUEPOOL), []),
    ("other engines are not ours", entry("django.db.backends.postgresql", CONN_MAX_AGE=60), []),
    ("persistent connections", entry(CONN_MAX_AGE=None), ["E001"]),
    ("persistent connections (dj)", entry(QUEUEPOOL, CONN_MAX_AGE=600), ["E001"]),
    ("no pool", {**entry(), "OPTIONS": {}}, ["E002"]),
    ("pool of a wrong type", entry(OPTIONS={"pool": 10}), ["E002"]),
    ("pool False", entry(OPTIONS={"pool": False}), ["W006"]),
    (
        "min_size > max_size",
        entry(OPTIONS={"pool": {"min_size": 8, "max_size": 2, "timeout": 5}}),
        ["E003"],
    ),
    (
        "default min_size > max_size",
        entry(OPTIONS={"pool": {"max_size": 2, "timeout": 5}}),
        ["E003"],
    ),
    (
        "engine-owned pool keys",
        entry(OPTIONS={"pool": {"max_size": 4, "min_size": 1, "timeout": 5, "reset": print}}),
        ["E006"],
    ),
    ("pool with the dj engine", entry(QUEUEPOOL, OPTIONS={"pool": True}), ["E004"]),
    ("bad real_pool", entry(OPTIONS={"real_pool": {"leak_treshold": 5}}), ["E005"]),
    ("long pool timeout", entry(OPTIONS={"pool": {"min_size": 1, "timeout": 60}}), ["W001"]),
    ("pool True: psycopg_pool's 30 s timeout", entry(OPTIONS={"pool": True}), ["W001"]),
    (
        "long QueuePool timeout",
        entry(QUEUEPOOL, POOL_OPTIONS={"POOL_SIZE": 4, "TIMEOUT": 30}),
        ["W001"],
    ),
    ("AUTOCOMMIT off", entry(AUTOCOMMIT=False), ["W002"]),
    ("PgBouncer port, server-side cursors on", entry(PORT=6432), ["W003"]),
    ("PgBouncer host, server-side cursors on", entry(HOST="pgbouncer.internal"), ["W003"]),
    ("PgBouncer with cursors off", entry(PORT="6432", DISABLE_SERVER_SIDE_CURSORS=True), ["W004"]),
    (
        "transaction pooler, session_state error",
        entry(DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS={"real_pool": {"session_state": "error"}}),
        [],
    ),
    (
        "transaction pooler, prepared statements on",
        entry(
            DISABLE_SERVER_SIDE_CURSORS=True,
            OPTIONS={"prepare_threshold": 5, "real_pool": {"session_state": "error"}},
        ),
        ["W005"],
    ),
]


@pytest.mark.parametrize(("case", "settings_dict", "expected"), CASES, ids=[c[0] for c in CASES])
def test_check_ids(case: str, settings_dict: dict[str, Any], expected: list[str]) -> None:
    assert ids(check_alias("db", settings_dict)) == expected


def test_hints_name_the_setting_to_change() -> None:
    (error,) = check_alias("replica", entry(CONN_MAX_AGE=None))
    assert isinstance(error, Error)
    assert error.obj == "DATABASES['replica']"
    assert "DATABASES['replica']['CONN_MAX_AGE'] = 0" in error.hint
    (warning,) = check_alias("db", entry(OPTIONS={"pool": {"min_size": 1, "timeout": 60}}))
    assert isinstance(warning, Warning)
    assert "DATABASES['db']['OPTIONS']['pool']['timeout']" in warning.hint
    (warning,) = check_alias("db", entry(PORT=6432, DISABLE_SERVER_SIDE_CURSORS=True))
    assert "['session_state'] = 'error'" in warning.hint
    (error,) = check_alias("db", entry(OPTIONS={"real_pool": {"leak_treshold": 5}}))
    assert "leak_treshold" in error.msg


def test_test_settings_pass_every_check() -> None:
    for alias in connections:
        assert check_alias(alias, connections[alias].settings_dict) == []
    # The app's checks, as Django runs them (registered once the app is installed).
    assert checks.check_databases() == []


def test_integration_checks_are_the_runner_checks() -> None:
    import importlib.util

    from django_pg_real_pool._checks_runners import RUNNER_CHECKS

    expected = [
        message
        for _, requirement, check in RUNNER_CHECKS
        if importlib.util.find_spec(requirement) is not None
        for message in check()
    ]
    assert checks.check_integrations() == expected


def test_call_command_check_runs_the_app_checks() -> None:
    from django.core.checks import registry
    from django.core.management.base import SystemCheckError

    settings_dict = connections["other"].settings_dict
    with modify_settings(INSTALLED_APPS={"append": "django_pg_real_pool"}):
        assert checks.check_databases in registry.registry.get_checks()
        out = StringIO()
        call_command("check", tags=[checks.TAG], databases=list(connections), stdout=out)
        assert "System check identified no issues" in out.getvalue()
        settings_dict["CONN_MAX_AGE"] = 60
        try:
            with pytest.raises(
                SystemCheckError, match=r"DATABASES\['other'\]: \(django_pg_real_pool.E001\)"
            ):
                call_command("check", tags=[checks.TAG])
        finally:
            settings_dict["CONN_MAX_AGE"] = 0


# -- `manage.py check` in a separate process, on purpose-made settings ---------


SETTINGS = """
from tests.support.pgserver import settings_from_dsn
import os

_server = settings_from_dsn(os.environ[{dsn_env!r}])

def db(engine, **extra):
    entry = {{"ENGINE": engine, **_server, "CONN_MAX_AGE": 0}}
    entry.update(extra)
    return entry

INSTALLED_APPS = {apps!r}
SECRET_KEY = "checks"
USE_TZ = True
DRAMATIQ_BROKER = {{"BROKER": "dramatiq.brokers.stub.StubBroker", "MIDDLEWARE": []}}
DATABASES = {{
    "default": db("django_pg_real_pool", OPTIONS={{"pool": {{"min_size": 1, "timeout": 5}}}}),
    "persistent": db("django_pg_real_pool", CONN_MAX_AGE=60, OPTIONS={{"pool": True}}),
    "nopool": db("django_pg_real_pool", OPTIONS={{}}),
    "sizes": db(
        "django_pg_real_pool", OPTIONS={{"pool": {{"min_size": 5, "max_size": 2, "timeout": 5}}}}
    ),
    "bouncer": db(
        "django_pg_real_pool.dj_db_conn_pool",
        PORT=6432,
        DISABLE_SERVER_SIDE_CURSORS=True,
        AUTOCOMMIT=False,
        POOL_OPTIONS={{"TIMEOUT": 5}},
    ),
    "subclass": db("chk_engine", CONN_MAX_AGE=60, OPTIONS={{"pool": {{"timeout": 5}}}}),
}}
"""

# A user's engine extending ours, run through DatabaseValidation as the
# engines themselves do (manage.py check --database).
ENGINE = """
from django_pg_real_pool import base
from django_pg_real_pool.checks import DatabaseValidation


class DatabaseWrapper(base.DatabaseWrapper):
    validation_class = DatabaseValidation
"""


def manage_check(tmp_path: Path, apps: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "chk_settings.py").write_text(SETTINGS.format(dsn_env=DSN_ENV, apps=apps))
    (tmp_path / "chk_engine").mkdir(exist_ok=True)
    (tmp_path / "chk_engine" / "__init__.py").write_text("")
    (tmp_path / "chk_engine" / "base.py").write_text(ENGINE)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chk_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "check", *args],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_py_check_with_the_app_installed(tmp_path: Path) -> None:
    result = manage_check(tmp_path, ["django_pg_real_pool"])
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # errors stop manage.py check
    expected = {
        "persistent": ["E001", "W001"],
        "nopool": ["E002"],
        "sizes": ["E003"],
        "bouncer": ["W002", "W004"],
    }
    for alias, codes in expected.items():
        for code in codes:
            assert f"DATABASES['{alias}']: (django_pg_real_pool.{code})" in output, (alias, code)
    # The dramatiq integration's check is wired in (its middleware is missing).
    assert "(django_pg_real_pool.E101)" in output
    assert "DATABASES['default']" not in output
    # A subclass engine is recognised from settings (its backend is loaded, #17).
    assert "DATABASES['subclass']: (django_pg_real_pool.E001)" in output


def test_manage_py_check_database_without_the_app(tmp_path: Path) -> None:
    result = manage_check(tmp_path, [], "--database", "subclass", "--database", "default")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "DATABASES['subclass']: (django_pg_real_pool.E001)" in output
    assert "E101" not in output  # the app's checks did not run
    assert "DATABASES['persistent']" not in output


def test_engine_checks_run_with_check_database_without_the_app(tmp_path: Path) -> None:
    result = manage_check(tmp_path, [], "--database", "persistent", "--database", "sizes")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "DATABASES['persistent']: (django_pg_real_pool.E001)" in output
    assert "DATABASES['sizes']: (django_pg_real_pool.E003)" in output
