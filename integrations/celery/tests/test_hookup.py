"""``install()`` itself, eager tasks and the W201 check, without a worker."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import psycopg
import pytest
from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from django_pg_real_pool import celery as pgrp_celery
from tests.support import pgstat
from tests.testapp.models import Item


def _app(name: str, task_cls: str | None = None, **conf: Any) -> Celery:
    app = Celery(name, fixups=[], set_as_current=False, task_cls=task_cls)
    app.conf.update(conf)
    return app


def _our_receivers(signal: Any) -> list[Any]:
    return [key for key, _ in signal.receivers if str(key[0]).startswith(pgrp_celery._UID)]


def test_install_twice_connects_each_receiver_once() -> None:
    app = _app("pgrp-twice")
    pgrp_celery.install(app, strict=False)
    pgrp_celery.install(app, strict=False)
    pgrp_celery.install(_app("pgrp-twice-other"), strict=False)
    for signal in (
        signals.task_prerun,
        signals.task_postrun,
        signals.worker_process_init,
        signals.worker_shutdown,
    ):
        assert len(_our_receivers(signal)) == 1


def test_install_cannot_change_strict_mode() -> None:
    app = _app("pgrp-flip")
    pgrp_celery.install(app, strict=False)
    with pytest.raises(ImproperlyConfigured, match=r"already called .* strict=False"):
        pgrp_celery.install(app, strict=True)


def test_strict_install_after_task_class_exists_is_refused() -> None:
    app = _app("pgrp-late")
    assert app.Task is not None  # tasks made from this class could not be checked
    with pytest.raises(ImproperlyConfigured, match=r"before any task is defined"):
        pgrp_celery.install(app, strict=True)


def test_strict_install_keeps_the_apps_task_base() -> None:
    app = _app("pgrp-strict", task_cls="celery.contrib.django.task:DjangoTask")
    pgrp_celery.install(app, strict=True)
    from celery.contrib.django.task import DjangoTask

    assert issubclass(app.Task, pgrp_celery._StrictCall)
    assert issubclass(app.Task, DjangoTask)


@pytest.mark.django_db(transaction=True)
def test_eager_task_runs_inside_the_callers_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app("pgrp-eager", task_always_eager=True)
    pgrp_celery.install(app, strict=True)

    @app.task
    def add_item(name: str) -> int:
        return Item.objects.create(name=name).pk

    caplog.set_level(logging.ERROR, logger="django_pg_real_pool")
    with transaction.atomic():
        Item.objects.create(name="caller")
        add_item.delay("eager").get()
        # Bracketed like a worker task, this atomic() would be rolled back.
        assert connections["default"].in_atomic_block
        assert connections["default"].connection is not None
    assert caplog.records == []
    with psycopg.connect(pgstat.admin_dsn(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT name FROM testapp_item WHERE name IN ('caller', 'eager') ORDER BY name"
        ).fetchall()
    assert rows == [("caller",), ("eager",)]


_CHECK_SCRIPT = textwrap.dedent(
    """
    import json
    import django
    from django.conf import settings

    settings.configure()
    django.setup()
    from django_pg_real_pool._checks_runners import celery_messages
    from django_pg_real_pool.celery import install

    def report():
        return [
            {"id": m.id, "level": m.level, "msg": m.msg, "hint": m.hint}
            for m in celery_messages()
        ]

    out = {"no_celery": report()}
    import celery
    out["celery_imported"] = report()
    celery.current_app.main  # Celery's own fallback app: not configured by the user
    out["fallback_app"] = report()
    app = celery.Celery("proj", fixups=[])
    out["app_created"] = report()
    install(app, strict=False)
    out["installed"] = report()
    print(json.dumps(out))
    """
)


def test_system_check_warns_until_install_is_called() -> None:
    # A fresh process: this one already has installed apps.
    done = subprocess.run(
        [sys.executable, "-c", _CHECK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["no_celery"] == out["celery_imported"] == out["fallback_app"] == []
    assert out["installed"] == []
    (message,) = out["app_created"]
    assert message["id"] == "django_pg_real_pool.W201"
    assert message["level"] == logging.WARNING
    assert "install() was never called in this process" in message["msg"]
    assert "'proj'" in message["msg"]
    assert "django_pg_real_pool.celery.install(app)" in message["hint"]
