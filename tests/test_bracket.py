"""The task bracket repairs whatever a task leaves, from any landing point."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import connections, transaction

from django_pg_real_pool import _bracket, pinned
from tests.support.inject import Injected, inject
from tests.support.pgstat import idle_in_transaction
from tests.support.wrappers import assert_released
from tests.testapp.models import Item


def leak_manual_transaction(alias: str) -> None:
    connections[alias].set_autocommit(False)
    Item.objects.using(alias).create(name="uncommitted")


def leak_open_cursor(alias: str) -> None:
    cursor = connections[alias].cursor()
    cursor.execute("SELECT 1")


def leak_pinned(alias: str) -> None:
    pinned(using=alias).__enter__()
    Item.objects.using(alias).count()


def leak_session_state(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog")


def leak_half_exited_atomic(alias: str) -> None:
    # What an asynchronous exception inside Atomic.__enter__/__exit__ leaves.
    block = transaction.atomic(using=alias)
    block.__enter__()
    Item.objects.using(alias).create(name="uncommitted")


def leak_interrupted_return(alias: str) -> None:
    # An asynchronous exception between "connection = None" and putconn().
    wrapper: Any = connections[alias]
    Item.objects.using(alias).count()
    wrapper.ensure_connection()
    wrapper.connection = None


LEAKS = {
    "manual transaction": (leak_manual_transaction, "autocommit left off"),
    "open cursor": (leak_open_cursor, "cursor(s) not closed"),
    "pinned": (leak_pinned, "pinned() block not exited"),
    "session state": (leak_session_state, "session state set outside pinned()"),
    "half-exited atomic": (leak_half_exited_atomic, "atomic() block still open"),
    "interrupted return": (leak_interrupted_return, "interrupted"),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_end_repairs_and_reports_each_leak(
    case: str, engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    leak, described = LEAKS[case]
    caplog.set_level(logging.ERROR, logger="django_pg_real_pool.bracket")
    leak(engine)
    leaks = _bracket.end("app.tasks.leaky", "msg-42")
    assert [leak.alias for leak in leaks] == [engine]
    records = [r for r in caplog.records if r.name == "django_pg_real_pool.bracket"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "app.tasks.leaky (id msg-42)" in message
    assert repr(engine) in message
    assert described in message
    assert_released(engine)
    assert not idle_in_transaction(admin)
    assert not Item.objects.using(engine).filter(name="uncommitted").exists()
    # The wrapper is usable again, on a clean session.
    with connections[engine].cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == ('"$user", public',)
    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="after")
    assert Item.objects.using(engine).filter(name="after").exists()


def test_clean_task_reports_nothing(engine: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="django_pg_real_pool.bracket")
    assert _bracket.begin("task", "1") == []
    with transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="ok")
    assert _bracket.end("task", "1") == []
    assert not caplog.records


def _busy_task(engine: str, round_no: int) -> None:
    """Atomic blocks, an iterator and a pinned block, forever."""
    n = 0
    while True:  # only the injected exception ends it
        n += 1
        with transaction.atomic(using=engine):
            Item.objects.using(engine).create(name=f"r{round_no}-{n}")
            with transaction.atomic(using=engine):
                Item.objects.using(engine).filter(name=f"r{round_no}-{n}").update(value=n)
        for _ in Item.objects.using(engine).filter(value=-5).iterator():
            pass
        with pinned(using=engine):
            Item.objects.using(engine).exists()


def _interrupted_round(engine: str, round_no: int, delay: float) -> dict[str, Any]:
    started = threading.Event()
    caught = threading.Event()
    stopped = threading.Event()
    result: dict[str, Any] = {}

    def task() -> None:
        try:
            started.set()
            _busy_task(engine, round_no)
        except BaseException as exc:
            # Usually Injected; Django may replace it with the error its
            # cleanup hit (e.g. "can't change autocommit: ACTIVE") when it
            # lands inside a commit -- the task fails either way.
            result["interrupted"] = type(exc).__name__
        finally:
            while not stopped.is_set():
                # A second injection, sent before this one was seen, lands
                # here; none comes once ``stopped`` is set.
                with contextlib.suppress(Injected):
                    caught.set()
                    stopped.wait(30)
            result["leaks"] = _bracket.end("fuzz", str(round_no))
            result["clean"] = connections[engine].connection is None
            with connections[engine].cursor() as cursor:
                cursor.execute("SELECT 1")
            result["usable"] = True
            connections[engine].close()

    worker = threading.Thread(target=task)
    worker.start()
    started.wait(30)
    time.sleep(delay)  # a random landing point, not a wait for state
    for _ in range(10):
        inject(worker, Injected)
        # CPython drops an asynchronous exception that lands in a finalizer
        # run by the garbage collector ("Exception ignored in ..."): the task
        # then goes on, and needs another one, as a worker's time limit would.
        if caught.wait(1.0):
            break
    stopped.set()
    worker.join(60)
    return result


def test_asynchronous_exception_at_any_point_is_repaired(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    """Inject an exception at random instants into a thread busy with atomic
    blocks, iterators and pinned blocks; the bracket must always recover."""
    rng = random.Random(20261127)
    for round_no in range(40):
        result = _interrupted_round(engine, round_no, rng.uniform(0.001, 0.03))
        assert result.get("interrupted"), result
        assert result["clean"] and result["usable"], result
    assert not idle_in_transaction(admin)
    assert_released(engine)
    # Every committed row is complete: created and updated in one transaction.
    assert not Item.objects.using(engine).filter(name__startswith="r", value=0).exists()
