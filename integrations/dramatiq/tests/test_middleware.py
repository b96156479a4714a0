"""The middleware's hooks in-process, on the test suite's database.

dramatiq's own StubBroker and Worker threads drive the hooks where a real
worker run would be slow to set up; the e2e modules cover the real CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dramatiq
import psycopg
import pytest
from django.db import connections, transaction
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, SkipMessage

from django_pg_real_pool import LeakedConnection
from django_pg_real_pool.dramatiq import RealPoolMiddleware
from tests.support.pgstat import admin_dsn, idle_in_transaction
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

BRACKET = "django_pg_real_pool.bracket"


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        yield conn


def proxy(actor: str = "some_actor") -> MessageProxy:
    return MessageProxy(
        Message(queue_name="default", actor_name=actor, args=(), kwargs={}, options={})
    )


def leak_a_transaction(name: str) -> None:
    transaction.set_autocommit(False)
    Item.objects.create(name=name)


def bracket_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == BRACKET]


def test_end_of_message_repairs_once_and_repeats_safely(
    caplog: pytest.LogCaptureFixture, admin: psycopg.Connection[Any]
) -> None:
    middleware = RealPoolMiddleware()
    message = proxy("leaky")
    leak_a_transaction("lost")
    assert idle_in_transaction(admin)
    middleware.after_process_message(StubBroker(middleware=[]), message)
    # dramatiq runs the after-hooks again when one of them is interrupted.
    middleware.after_process_message(StubBroker(middleware=[]), message)
    [record] = bracket_records(caplog)
    assert record.pgrp_task == "leaky"  # type: ignore[attr-defined]
    assert record.pgrp_task_id == message.message_id  # type: ignore[attr-defined]
    assert record.pgrp_alias == "default"  # type: ignore[attr-defined]
    assert not idle_in_transaction(admin)
    assert connections["default"].connection is None
    assert not Item.objects.filter(name="lost").exists()
    assert not message.failed


def test_strict_mode_fails_the_message_with_leaked_connection() -> None:
    middleware = RealPoolMiddleware(strict=True)
    message = proxy("leaky")
    leak_a_transaction("lost")
    middleware.after_process_message(StubBroker(middleware=[]), message)
    assert message.failed
    assert isinstance(message._exception, LeakedConnection)
    assert "leaky" in str(message._exception)
    assert "autocommit left off" in str(message._exception)


def test_strict_mode_keeps_the_actors_exception() -> None:
    middleware = RealPoolMiddleware(strict=True)
    message = proxy("leaky")
    leak_a_transaction("lost")
    own = ValueError("the actor's own")
    message.stuff_exception(own)
    middleware.after_process_message(StubBroker(middleware=[]), message, exception=own)
    assert message.failed
    assert message._exception is own


def test_strict_mode_from_the_django_setting(settings: Any) -> None:
    settings.REAL_POOL_STRICT = True
    message = proxy()
    leak_a_transaction("lost")
    RealPoolMiddleware().after_process_message(StubBroker(middleware=[]), message)
    assert message.failed


def test_message_option_overrides_the_setting(settings: Any) -> None:
    settings.REAL_POOL_STRICT = True
    message = MessageProxy(
        Message(
            queue_name="default",
            actor_name="a",
            args=(),
            kwargs={},
            options={"real_pool_strict": False},
        )
    )
    leak_a_transaction("lost")
    RealPoolMiddleware().after_process_message(StubBroker(middleware=[]), message)
    assert not message.failed


def test_clean_message_is_not_touched(caplog: pytest.LogCaptureFixture) -> None:
    message = proxy()
    Item.objects.create(name="kept")
    RealPoolMiddleware(strict=True).after_process_message(StubBroker(middleware=[]), message)
    assert bracket_records(caplog) == []
    assert not message.failed
    assert Item.objects.filter(name="kept").exists()


def test_enqueue_outside_consumer_threads_leaves_the_transaction_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # actor.send() inside atomic() in a view or an actor: not our business.
    middleware = RealPoolMiddleware()
    with transaction.atomic():
        Item.objects.create(name="inside")
        middleware.after_enqueue(StubBroker(middleware=[]), proxy()._message, None)
        assert connections["default"].in_atomic_block
        Item.objects.create(name="still inside")
    assert bracket_records(caplog) == []
    assert Item.objects.count() == 2


class LeakThenSkip(Middleware):
    """A middleware that leaks a transaction, then skips the message."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        leak_a_transaction(f"skipped-{message.message_id}")
        raise SkipMessage


def test_skipped_message_is_bracketed_on_its_worker_thread(
    caplog: pytest.LogCaptureFixture, admin: psycopg.Connection[Any]
) -> None:
    broker = StubBroker(middleware=[RealPoolMiddleware(), LeakThenSkip()])
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker)
    def never_runs() -> None:
        raise AssertionError("skipped messages do not run")

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        message = never_runs.send()
        broker.join(never_runs.queue_name, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    [record] = bracket_records(caplog)
    assert record.pgrp_task == "never_runs"  # type: ignore[attr-defined]
    assert record.pgrp_task_id == message.message_id  # type: ignore[attr-defined]
    assert not idle_in_transaction(admin)
    assert not Item.objects.filter(name=f"skipped-{message.message_id}").exists()
