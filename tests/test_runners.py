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
    from django_pg_real_pool.huey import system_check_messages

    assert system_check_messages() == []


def test_rq_worker_classes_and_check_without_django_rq() -> None:
    from rq.worker import SimpleWorker, Worker

    from django_pg_real_pool.rq import (
        RealPoolSimpleWorker,
        RealPoolWorker,
        RealPoolWorkerMixin,
        system_check_messages,
    )

    assert issubclass(RealPoolWorker, Worker)
    assert issubclass(RealPoolSimpleWorker, SimpleWorker)
    # The bracket runs first: it wraps RQ's own perform_job and teardown.
    assert RealPoolWorker.__mro__[1] is RealPoolWorkerMixin
    assert system_check_messages() == []
