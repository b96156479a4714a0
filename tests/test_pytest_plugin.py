"""The pytest plugin fails tests that leave connections behind, in a real pytest run."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from django_pg_real_pool import pytest_plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# A project on pytest-django, with its own test database on the test server.
DJANGO_CONFTEST = """
import os

import django
import pytest
from django.conf import settings

from tests.support.pgserver import DSN_ENV, settings_from_dsn


def pytest_configure(config):
    entry = {
        "ENGINE": "django_pg_real_pool",
        **settings_from_dsn(os.environ[DSN_ENV]),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "pool": {"min_size": 1, "max_size": 2, "timeout": 5},
            "application_name": "pgrp-plugin",
        },
        "TEST": {"NAME": f"test_pgrp_plugin_{os.getpid()}"},
    }
    settings.configure(
        DATABASES={"default": entry},
        INSTALLED_APPS=["tests.testapp"],
        USE_TZ=True,
        SECRET_KEY="plugin",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


@pytest.fixture(scope="session", autouse=True)
def _close_pools(django_db_setup):
    yield
    from django.db import connections

    connections["default"].close()
    connections["default"].close_pool()
"""

DJANGO_TESTS = """
import pytest
from django.db import connections, transaction
from django.test import TestCase

from django_pg_real_pool import pinned, session_context
from tests.testapp.models import Item


@pytest.mark.django_db(transaction=True)
def test_clean_transactional():
    Item.objects.create(name="a")
    assert Item.objects.count() == 1


@pytest.mark.django_db
def test_clean_inside_pytest_django_atomic():
    Item.objects.create(name="b")
    assert connections["default"].in_atomic_block


@pytest.mark.django_db(transaction=True)
def test_leaks_cursor():
    cursor = connections["default"].cursor()  # SITE-CURSOR
    cursor.execute("SELECT 1")


@pytest.mark.django_db(transaction=True)
def test_leaks_atomic():
    transaction.atomic().__enter__()  # SITE-ATOMIC
    Item.objects.create(name="t")


@pytest.mark.django_db(transaction=True)
def test_leaks_manual_transaction():
    transaction.set_autocommit(False)  # SITE-MANUAL
    Item.objects.create(name="m")


@pytest.mark.django_db(transaction=True)
def test_leaks_pin():
    pinned().__enter__()
    Item.objects.count()  # SITE-PIN


@pytest.mark.django_db(transaction=True)
def test_leaks_session_state():
    with connections["default"].cursor() as cursor:  # SITE-SESSION
        cursor.execute("SET search_path TO pg_catalog, public")


@pytest.mark.django_db(transaction=True)
def test_leaks_session_context():
    session_context(settings={"app.tenant_id": "9"}).__enter__()
    Item.objects.count()


@pytest.mark.django_db(transaction=True)
def test_starts_clean_after_the_leaks():
    wrapper = connections["default"]
    assert wrapper.connection is None
    assert not wrapper.in_atomic_block and wrapper.get_autocommit()
    assert wrapper.lease_pins() == 0
    with wrapper.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0] == '"$user", public'
        cursor.execute("SELECT coalesce(current_setting('app.tenant_id', true), '')")
        assert cursor.fetchone()[0] == ""
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'"
        )
        assert cursor.fetchone()[0] == 0
    assert Item.objects.count() == 0


class TestCaseStyle(TestCase):
    def test_one(self):
        Item.objects.create(name="x")
        self.assertEqual(Item.objects.count(), 1)

    def test_two(self):
        self.assertEqual(Item.objects.count(), 0)

    def test_three_leaks_a_pin_inside_the_class_transaction(self):
        pinned().__enter__()
        Item.objects.count()
"""

# A project without pytest-django: Django configured by hand, one leaky test.
PLAIN_CONFTEST = """
import os

import django
from django.conf import settings

from tests.support.pgserver import DSN_ENV, settings_from_dsn


def pytest_configure(config):
    entry = {
        "ENGINE": "django_pg_real_pool",
        **settings_from_dsn(os.environ[DSN_ENV]),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}},
    }
    settings.configure(DATABASES={"default": entry}, USE_TZ=True, SECRET_KEY="plugin")
    django.setup()


def pytest_unconfigure(config):
    from django.db import connections

    connections["default"].close()
    connections["default"].close_pool()
"""

PLAIN_TESTS = """
from django.db import connections


def test_leaks_cursor():
    cursor = connections["default"].cursor()
    cursor.execute("SELECT 1")
"""


def plugin_args() -> list[str]:
    """``-p`` the plugin unless its entry point already loads it (twice would clash)."""
    names = {ep.value for ep in metadata.entry_points(group="pytest11")}
    return [] if "django_pg_real_pool.pytest_plugin" in names else ["-p", pytest_plugin.__name__]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The inner run imports tests.support and tests.testapp from this checkout.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv(pytest_plugin.ENV_VAR, raising=False)
    return pytester


def line_of(path: Path, marker: str) -> int:
    """Line of ``marker`` in the file as written (makepyfile strips the first newline)."""
    lines = path.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if marker in text)


def test_leaky_tests_fail_with_alias_and_site_under_pytest_django(project: pytest.Pytester) -> None:
    project.makeconftest(DJANGO_CONFTEST)
    project.makepyfile(test_inner=DJANGO_TESTS)
    result = project.runpytest_subprocess(
        *plugin_args(), "--pg-real-pool-leaks", "-p", "no:randomly"
    )
    output = result.stdout.str()
    # Teardown failures are errors; the call phase of those tests passed.
    result.assert_outcomes(passed=12, errors=7)
    errored = {
        line.split("::")[-1].split(" ")[0]
        for line in result.stdout.lines
        if line.startswith("ERROR test_inner.py::")
    }
    assert errored == {
        "test_leaks_cursor",
        "test_leaks_atomic",
        "test_leaks_manual_transaction",
        "test_leaks_pin",
        "test_leaks_session_state",
        "test_leaks_session_context",
        "test_three_leaks_a_pin_inside_the_class_transaction",
    }
    assert "alias 'default': 1 cursor(s) not closed." in output
    assert "alias 'default': atomic() block still open (1 level(s))." in output
    assert "autocommit left off (manual transaction)" in output
    assert "pinned() block not exited (1 level(s))" in output
    assert "session state set outside pinned() (SET)" in output
    assert "session_context() left entered (app.tenant_id='9')" in output
    for marker, test in [
        ("SITE-CURSOR", "test_leaks_cursor"),
        ("SITE-ATOMIC", "test_leaks_atomic"),
        ("SITE-MANUAL", "test_leaks_manual_transaction"),
        ("SITE-PIN", "test_leaks_pin"),
        ("SITE-SESSION", "test_leaks_session_state"),
    ]:
        line = line_of(project.path / "test_inner.py", marker)
        assert f'test_inner.py", line {line}, in {test}' in output
    # The clean tests, the test after the leaks and the TestCase class all passed.
    assert "test_starts_clean_after_the_leaks" not in "".join(
        line for line in result.stdout.lines if line.startswith(("FAILED", "ERROR"))
    )


def test_plain_run_ignores_leaks(project: pytest.Pytester) -> None:
    project.makeconftest(PLAIN_CONFTEST)
    project.makepyfile(test_small=PLAIN_TESTS)
    result = project.runpytest_subprocess(*plugin_args(), "-p", "no:django")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("switch", ["ini", "env"])
def test_opt_in_by_ini_option_or_environment(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    project.makeconftest(PLAIN_CONFTEST)
    project.makepyfile(test_small=PLAIN_TESTS)
    if switch == "ini":
        project.makeini(f"[pytest]\n{pytest_plugin.INI_OPTION} = true\n")
    else:
        monkeypatch.setenv(pytest_plugin.ENV_VAR, "1")
    result = project.runpytest_subprocess(*plugin_args(), "-p", "no:django")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_cursor*",
            "*alias 'default': 1 cursor(s) not closed.",
            f'*test_small.py", line {line_of(project.path / "test_small.py", ".cursor()")}, '
            "in test_leaks_cursor",
        ]
    )
