"""The task runners' hook-ups, in process: huey's hooks map onto the bracket."""

from __future__ import annotations

import logging
from typing import Any

import huey as huey_api
import psycopg
import pytest
from django.db import connections, transaction

from tests.support.pgstat import idle_in_transaction
from tests.testapp.models import Item

LOGGER = "django_pg_real_pool.bracket"


def test_huey_hooks_repair_and_report_a_leaking_task(
    engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from django_pg_real_pool.huey import install

    caplog.set_level(logging.ERROR, logger=LOGGER)
    huey = huey_api.MemoryHuey("runners", immediate=False)
    install(huey)

    @huey.task(name="leaky")
    def leaky() -> int:
        connections[engine].set_autocommit(False)
        Item.objects.using(engine).create(name="huey-uncommitted")
        return 1

    result = leaky()
    # What a consumer's worker does with a dequeued task, on this thread.
    assert huey.execute(huey.dequeue()) == 1
    assert result.get() == 1
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert f"leaky (id {result.id}) leaked on database alias {engine!r}" in record.getMessage()
    assert connections[engine].connection is None
    assert connections[engine].get_autocommit()
    assert not idle_in_transaction(admin)
    assert not Item.objects.using(engine).filter(name="huey-uncommitted").exists()


def test_huey_immediate_mode_runs_inside_the_callers_transaction(engine: str) -> None:
    from django_pg_real_pool.huey import install

    huey = huey_api.MemoryHuey("immediate", immediate=True)
    install(huey)

    @huey.task(name="inner")
    def inner() -> None:
        Item.objects.using(engine).create(name="huey-inner")

    with transaction.atomic(using=engine):
        inner()
        # Left alone: the caller's transaction is still open.
        assert connections[engine].in_atomic_block
    assert Item.objects.using(engine).filter(name="huey-inner").exists()


def test_huey_check_silent_without_django_huey() -> None:
    from django_pg_real_pool._checks_runners import huey_messages

    assert huey_messages() == []


def test_rq_worker_classes_and_check_without_django_rq() -> None:
    from rq.worker import SimpleWorker, Worker

    from django_pg_real_pool._checks_runners import rq_messages
    from django_pg_real_pool.rq import RealPoolSimpleWorker, RealPoolWorker, RealPoolWorkerMixin

    assert issubclass(RealPoolWorker, Worker)
    assert issubclass(RealPoolSimpleWorker, SimpleWorker)
    # The bracket runs first: it wraps RQ's own perform_job and teardown.
    assert RealPoolWorker.__mro__[1] is RealPoolWorkerMixin
    assert rq_messages() == []


# -- Django Tasks (django.tasks on Django 6.x, the django_tasks backport on 5.x) --


def _tasks_framework() -> str:
    """The package of the Tasks framework this Django runs (built in first)."""
    import importlib.util

    return "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"


def _tasks_signals() -> Any:
    import importlib

    return importlib.import_module(f"{_tasks_framework()}.signals")


class DatabaseBackend:
    """Stands for a worker backend class (the signals' sender)."""


class _Task:
    module_path = "app.tasks.leaky"


class _TaskResult:
    task = _Task()
    id = "tr-1"
    status = "RUNNING"


def test_tasks_hookup_connects_to_the_installed_framework() -> None:
    from django_pg_real_pool.tasks import connect

    assert f"{_tasks_framework()}.signals" in connect()
    # Idempotent: one receiver per signal, however often ready() runs.
    connect()
    signals = _tasks_signals()
    ours = [
        key
        for key, *_ in signals.task_started.receivers
        if isinstance(key[0], str) and key[0].startswith("django_pg_real_pool.")
    ]
    assert len(ours) == 1


def test_tasks_worker_signals_bracket_the_run(
    engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from django_pg_real_pool.tasks import connect

    connect()
    caplog.set_level(logging.ERROR, logger=LOGGER)
    signals = _tasks_signals()
    # What a worker (db_worker, django-tasks-rq) sends around a run.
    signals.task_started.send(sender=DatabaseBackend, task_result=_TaskResult())
    connections[engine].set_autocommit(False)
    Item.objects.using(engine).create(name="tasks-uncommitted")
    signals.task_finished.send(sender=DatabaseBackend, task_result=_TaskResult())
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert f"app.tasks.leaky (id tr-1) leaked on database alias {engine!r}" in (record.getMessage())
    assert connections[engine].connection is None
    assert not idle_in_transaction(admin)
    assert not Item.objects.using(engine).filter(name="tasks-uncommitted").exists()


def record_item(name: str) -> None:
    """A Django Task body (tasks must be module-level functions)."""
    Item.objects.using("default").create(name=name)


def test_tasks_immediate_backend_runs_inside_the_callers_transaction() -> None:
    import importlib

    from django.test import override_settings

    from django_pg_real_pool.tasks import connect

    connect()
    framework = _tasks_framework()
    backend = f"{framework}.backends.immediate.ImmediateBackend"
    with override_settings(TASKS={"default": {"BACKEND": backend}}):
        task = importlib.import_module(framework).task(record_item)
        with transaction.atomic(using="default"):
            task.enqueue("tasks-immediate")
            # Left alone: the caller's transaction is still open.
            assert connections["default"].in_atomic_block
    assert Item.objects.using("default").filter(name="tasks-immediate").exists()


def test_tasks_check_reports_a_worker_backend_without_the_hookup() -> None:
    from django.test import override_settings

    from django_pg_real_pool import tasks
    from django_pg_real_pool._checks_runners import tasks_messages

    saved = set(tasks._connected)
    tasks._connected.clear()
    try:
        worker = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
        with override_settings(TASKS=worker):
            [warning] = tasks_messages()
        assert warning.id == "django_pg_real_pool.W501"
        assert "django_pg_real_pool.tasks.RealPoolTasksConfig" in (warning.hint or "")
        immediate = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
        with override_settings(TASKS=immediate):
            assert tasks_messages() == []
    finally:
        tasks._connected.update(saved)
