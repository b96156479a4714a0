"""Bad configuration fails at first use, naming the setting, the value and the fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.support.wrappers import make_wrapper


def test_missing_pool_option() -> None:
    wrapper = make_wrapper("django_pg_real_pool", "nopool")
    with pytest.raises(ImproperlyConfigured, match=r"\['OPTIONS'\] has no 'pool'.*\"pool\":"):
        wrapper.ensure_connection()


def test_pool_option_of_wrong_type() -> None:
    wrapper = make_wrapper("django_pg_real_pool", "badpool", OPTIONS={"pool": "yes"})
    with pytest.raises(
        ImproperlyConfigured, match=r"\['pool'\] is 'yes'; set it to True or to a dict"
    ):
        wrapper.ensure_connection()


def test_min_size_above_max_size() -> None:
    wrapper = make_wrapper(
        "django_pg_real_pool", "minmax", OPTIONS={"pool": {"min_size": 5, "max_size": 2}}
    )
    with pytest.raises(ImproperlyConfigured, match="min_size=5 > max_size=2"):
        wrapper.ensure_connection()


@pytest.mark.parametrize("engine", ["django_pg_real_pool", "django_pg_real_pool.dj_db_conn_pool"])
def test_conn_max_age_not_zero(engine: str) -> None:
    options: dict[str, Any] = {"pool": True} if engine == "django_pg_real_pool" else {}
    wrapper = make_wrapper(engine, "maxage", CONN_MAX_AGE=600, OPTIONS=options)
    with pytest.raises(
        ImproperlyConfigured, match=r"\['CONN_MAX_AGE'\] is 600.*set CONN_MAX_AGE to 0"
    ):
        wrapper.ensure_connection()


def test_conn_max_age_is_checked_for_every_wrapper_not_only_the_pools_creator(
    engine: str,
) -> None:
    # The native engine checked it only when it created the alias's pool: a
    # wrapper made once the pool existed (another thread's, a copy()) went on
    # releasing per query and ignored its CONN_MAX_AGE. The dj engine checked
    # it at each wrapper's first borrow.
    from django.db import connections

    connections[engine].ensure_connection()  # the alias's pool exists
    connections[engine].close()
    new = connections[engine].copy()
    new.settings_dict["CONN_MAX_AGE"] = None
    with pytest.raises(ImproperlyConfigured, match=r"\['CONN_MAX_AGE'\] is None"):
        new.ensure_connection()
    assert new.connection is None


def test_dj_engine_rejects_native_pool_option() -> None:
    wrapper = make_wrapper(
        "django_pg_real_pool.dj_db_conn_pool", "djnative", OPTIONS={"pool": True}
    )
    with pytest.raises(ImproperlyConfigured, match="POOL_OPTIONS"):
        wrapper.ensure_connection()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"session_state": "maybe"}, r"\['session_state'\] is 'maybe'; set it to one of"),
        ({"leak_threshold": -1}, r"\['leak_threshold'\] is -1; set it to a number of seconds"),
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
    ],
)
def test_real_pool_options_validated(options: dict[str, Any], match: str) -> None:
    wrapper = make_wrapper(
        "django_pg_real_pool", "rp", OPTIONS={"pool": True, "real_pool": options}
    )
    with pytest.raises(ImproperlyConfigured, match=match):
        wrapper.ensure_connection()


def test_real_pool_options_not_passed_to_psycopg(engine: str) -> None:
    from django.db import connections

    settings = connections[engine].settings_dict
    assert "real_pool" not in connections[engine].get_connection_params()
    assert settings["ENGINE"].startswith("django_pg_real_pool")


def test_explicit_pool_false_behaves_like_stock(caplog: pytest.LogCaptureFixture) -> None:
    wrapper = make_wrapper("django_pg_real_pool", "stocklike", OPTIONS={"pool": False})
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert wrapper.connection is not None  # held, like the stock backend
    finally:
        wrapper.close()
    assert "runs without a pool" in caplog.text


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def test_old_django_refused() -> None:
    out = _run(
        """
        import django
        django.VERSION = (5, 0, 9, "final", 0)
        from django.conf import settings
        settings.configure()
        try:
            import django_pg_real_pool.base
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "ImproperlyConfigured django_pg_real_pool needs Django >= 5.1" in out
    assert "this is Django 5.0" in out


def test_psycopg2_refused() -> None:
    out = _run(
        """
        import sys
        sys.modules["psycopg"] = None  # as if psycopg 3 were not installed
        from django.conf import settings
        settings.configure()
        try:
            import django_pg_real_pool.base
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "django_pg_real_pool needs psycopg 3, but Django loaded psycopg2" in out
    assert "pip install 'psycopg[pool]'" in out


def test_dj_engine_without_extra_names_the_extra() -> None:
    out = _run(
        """
        import sys
        sys.modules["dj_db_conn_pool"] = None  # as if the extra were not installed
        from django.conf import settings
        settings.configure()
        try:
            import django_pg_real_pool.dj_db_conn_pool.base
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "needs django-db-connection-pool" in out
    assert "pip install 'django-pg-real-pool[dj-db-conn-pool]'" in out
