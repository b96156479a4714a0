"""dramatiq_messages(): the middleware missing, duplicated or not first."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import dramatiq.broker
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from django_pg_real_pool._checks_runners import dramatiq_messages
from django_pg_real_pool.dramatiq import RealPoolMiddleware
from integrations.dramatiq import harness

OURS = "django_pg_real_pool.dramatiq.RealPoolMiddleware"
ADMIN = "django_dramatiq.middleware.AdminMiddleware"
TIME_LIMIT = "dramatiq.middleware.TimeLimit"


@pytest.fixture(autouse=True)
def no_global_broker() -> Iterator[None]:
    """Each test sets the global broker it needs; the previous one comes back."""
    previous = dramatiq.broker.global_broker
    dramatiq.broker.global_broker = None
    yield
    dramatiq.broker.global_broker = previous


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_silent_when_dramatiq_is_not_configured() -> None:
    assert dramatiq_messages() == []


def test_first_in_django_dramatiq_settings_is_right(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [OURS, TIME_LIMIT, ADMIN]}
    assert dramatiq_messages() == []


def test_missing_from_django_dramatiq_settings(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [TIME_LIMIT, ADMIN]}
    [error] = dramatiq_messages()
    assert error.id == "django_pg_real_pool.E101"
    assert "settings.DRAMATIQ_BROKER['MIDDLEWARE']" in error.msg
    assert f"put {OURS!r} first" in str(error.hint)


def test_missing_middleware_list_counts_as_missing(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"BROKER": "dramatiq.brokers.stub.StubBroker"}
    assert ids(dramatiq_messages()) == ["django_pg_real_pool.E101"]


def test_duplicate_entry(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [OURS, TIME_LIMIT, RealPoolMiddleware()]}
    [error] = dramatiq_messages()
    assert error.id == "django_pg_real_pool.E102"
    assert "2 times" in error.msg
    assert "positions [0, 2]" in error.msg
    assert "keep only the first entry" in str(error.hint)


def test_wrong_position_names_what_runs_after_it(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [TIME_LIMIT, ADMIN, OURS]}
    [warning] = dramatiq_messages()
    assert warning.id == "django_pg_real_pool.W103"
    assert "position 2" in warning.msg
    assert "after TimeLimit, AdminMiddleware" in warning.msg
    assert f"put {OURS!r} first" in str(warning.hint)


def test_duplicate_and_misplaced(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [TIME_LIMIT, OURS, OURS]}
    assert ids(dramatiq_messages()) == [
        "django_pg_real_pool.E102",
        "django_pg_real_pool.W103",
    ]


def test_subclass_counts_as_the_middleware(settings: Any) -> None:
    class Custom(RealPoolMiddleware):
        pass

    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [Custom(strict=True), TIME_LIMIT]}
    assert dramatiq_messages() == []


def test_plain_dramatiq_broker_appended_last() -> None:
    broker = StubBroker(middleware=[AgeLimit(), TimeLimit(), Retries()])
    broker.add_middleware(RealPoolMiddleware())
    dramatiq.set_broker(broker)
    [warning] = dramatiq_messages()
    assert warning.id == "django_pg_real_pool.W103"
    assert "the dramatiq broker's middleware" in warning.msg
    assert "broker.add_middleware(RealPoolMiddleware(), before=AgeLimit)" in str(warning.hint)


def test_plain_dramatiq_broker_first_is_right() -> None:
    broker = StubBroker(middleware=[AgeLimit(), TimeLimit()])
    broker.add_middleware(RealPoolMiddleware(), before=AgeLimit)
    dramatiq.set_broker(broker)
    assert dramatiq_messages() == []


def test_plain_dramatiq_broker_without_it() -> None:
    dramatiq.set_broker(StubBroker(middleware=[TimeLimit()]))
    [error] = dramatiq_messages()
    assert error.id == "django_pg_real_pool.E101"
    assert "before=TimeLimit" in str(error.hint)


def test_silent_when_no_alias_uses_this_engine(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"MIDDLEWARE": [TIME_LIMIT]}
    with pytest.warns(UserWarning, match="Overriding setting DATABASES"):
        settings.DATABASES = {
            alias: {**entry, "ENGINE": "django.db.backends.postgresql"}
            for alias, entry in settings.DATABASES.items()
        }
    assert dramatiq_messages() == []


@pytest.mark.e2e
@pytest.mark.parametrize(("position", "found"), [("first", None), ("last", "W103")])
def test_manage_py_check_of_the_integration_project(position: str, found: str | None) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        check=False,
        cwd=harness.PROJECT_DIR,
        env={**os.environ, "DQ_MIDDLEWARE_POSITION": position},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    if found is None:
        assert result.returncode == 0, output
        assert "System check identified no issues" in output
    else:
        assert result.returncode == 1, output
        assert f"(django_pg_real_pool.{found})" in output
