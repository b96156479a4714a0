"""Actors that leak, one per case, on a real worker: cleaned, reported, harmless.

One worker with ONE thread runs every case, so each probe message runs on the
very thread the leaking message used. After each case: the write is not
committed, no session is left busy or inside a transaction, no wrapper of the
worker holds a connection, the leak record names the actor and the message,
and the next message sees a clean session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from integrations.dramatiq import harness
from tests.support import leakcases
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker(dq: harness.Project) -> Iterator[leakcases.LeakRun]:
    dq.broker.flush_all()

    # A short pool timeout: TimeLimit cannot interrupt a thread blocked in
    # the pool's wait before that wait ends.
    def start(log: Path) -> ManagedProcess:
        return dq.worker(threads=1, leak_log=log, DQ_POOL_TIMEOUT="2")

    with leakcases.leak_run(dq, "dramatiq", start) as run:
        yield run


def committed(admin: psycopg.Connection[Any], marker: str) -> int:
    return leakcases.committed(admin, "dq_app", marker)


def assert_clean(worker: leakcases.LeakRun, admin: psycopg.Connection[Any]) -> dict[str, Any]:
    """The server, the pool and the next message on the same thread all agree."""
    seen = worker.probe()
    # dramatiq's probe sees more than the shared one: cursors, the pool.
    assert seen["open_cursors"] == 0
    assert not seen["needs_rollback"]
    assert seen["out_of_pool"] == 0, seen["pool"]
    assert seen["pool"]["requests_waiting"] == 0
    # AdminMiddleware may be writing the probe's status right now.
    leakcases.assert_clean_probe(seen, admin, "dramatiq")
    return seen


@pytest.mark.parametrize(("actor", "problem", "raised"), leakcases.LEAKS, ids=leakcases.LEAK_IDS)
def test_leak_is_repaired_and_reported(
    worker: leakcases.LeakRun,
    admin: psycopg.Connection[Any],
    actor: str,
    problem: str,
    raised: str | None,
) -> None:
    marker = f"{actor}-{uuid.uuid4().hex[:8]}"
    message = worker.project.send(actor, marker)
    assert_clean(worker, admin)
    outcome = worker.project.stored_outcome(message)
    assert outcome.error == raised, outcome
    assert committed(admin, marker) == 0
    leakcases.assert_leak_record(
        worker.log.records_of(message.message_id),
        task=actor,
        task_id=message.message_id,
        problem=problem,
        phase="",
    )
    # Strict mode is off: dead-lettered only when the actor raised (no retries).
    assert (message.message_id in worker.project.dead_lettered()) == (raised is not None)


def test_exception_inside_atomic_rolls_back_without_a_leak(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"atomic-{uuid.uuid4().hex[:8]}"
    message = worker.project.send("raise_in_atomic", marker)
    assert_clean(worker, admin)
    assert worker.project.stored_outcome(message).error == "ValueError"
    assert committed(admin, marker) == 0
    assert worker.log.records_of(message.message_id) == []
    # dramatiq's own error record names the actor.
    assert f"Failed to process message raise_in_atomic('{marker}')" in worker.process.output()


def test_time_limit_inside_a_transaction(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"time-limit-{uuid.uuid4().hex[:8]}"
    message = worker.project.send("time_limit_in_transaction", marker)
    assert_clean(worker, admin)
    assert worker.project.stored_outcome(message).error == "TimeLimitExceeded"
    assert committed(admin, marker) == 0
    # Wherever TimeLimitExceeded landed, either Django's atomic() exit rolled
    # back (nothing to report) or the bracket repaired and reported it.
    for record in worker.log.records_of(message.message_id):
        assert record["task"] == "time_limit_in_transaction"
    assert f"Failed to process message time_limit_in_transaction('{marker}')" in (
        worker.process.output()
    )
    # The thread is not stuck: a transaction on it works and commits.
    assert assert_clean(worker, admin)["thread"] == worker.thread


def test_strict_mode_fails_the_leaking_message(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"strict-{uuid.uuid4().hex[:8]}"
    message = worker.project.send("leak_autocommit_off", marker, options={"real_pool_strict": True})
    assert_clean(worker, admin)
    outcome = worker.project.stored_outcome(message)
    assert outcome.error == "LeakedConnection", outcome
    assert "leak_autocommit_off" in outcome.text
    assert "autocommit left off" in outcome.text
    assert message.message_id in worker.project.dead_lettered()
    assert committed(admin, marker) == 0
    [record] = worker.log.records_of(message.message_id)
    assert record["task"] == "leak_autocommit_off"


def test_strict_mode_keeps_the_actors_own_exception(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"strict-raise-{uuid.uuid4().hex[:8]}"
    message = worker.project.send(
        "leak_atomic_left_open", marker, options={"real_pool_strict": True}
    )
    assert_clean(worker, admin)
    outcome = worker.project.stored_outcome(message)
    assert outcome.error == "ValueError", outcome
    assert marker in outcome.text
    assert message.message_id in worker.project.dead_lettered()


def test_leak_on_a_consumer_thread_outside_any_message(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    # A middleware leaks while the consumer thread re-enqueues a delayed
    # message (where django-dramatiq's AdminMiddleware writes too).
    marker = f"consumer-{uuid.uuid4().hex[:8]}"
    message = worker.project.send(
        "delayed_note", delay=50, options={"leak_on_consumer_thread": True}, marker=marker
    )
    assert worker.project.outcome(message).value == marker
    worker.process.wait_for_output(
        rf"delayed_note \(id {message.message_id}\) leaked on database alias 'default' "
        r"on a dramatiq consumer thread",
        timeout=30,
    )
    assert_clean(worker, admin)
    assert committed(admin, marker) == 0
    assert committed(admin, f"{marker}-ran") == 1
    [record] = worker.log.records_of(message.message_id)
    assert record["task"] == "delayed_note"
    assert any("autocommit left off" in p for p in record["problems"]), record


# Last but one: without the engine's fix it loses a connection for the rest
# of the worker's life.
def test_time_limit_while_waiting_for_a_pooled_connection(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    # psycopg_pool traps only Exception while a client waits: without care
    # the interrupted waiter keeps its place and swallows the next connection
    # returned (then out of the pool for good: assert_clean counts them).
    marker = f"pool-wait-{uuid.uuid4().hex[:8]}"
    message = worker.project.send("time_limit_waiting_for_pool", marker)
    assert_clean(worker, admin)
    assert worker.project.stored_outcome(message).error == "TimeLimitExceeded"
    assert committed(admin, marker) == 0
    assert worker.log.records_of(message.message_id) == []


def test_every_record_was_expected(worker: leakcases.LeakRun) -> None:
    # Nothing was reported "before the task started": every end-of-message
    # clean-up finished on its own.
    phases = [
        r["message"] for r in worker.log.records() if "before the task started" in r["message"]
    ]
    assert phases == []
    assert "Unexpected failure" not in worker.process.output()
