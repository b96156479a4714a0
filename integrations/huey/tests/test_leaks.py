"""Tasks that leak, one per case, on a real huey consumer: cleaned, reported, harmless.

A consumer with ONE thread worker runs every case, so each probe runs on the
very thread the leaking task used. After each case: the write is not
leakcases.committed, no session is left inside a transaction, no wrapper holds a
connection, the leak record names the task and its id, and the next task
sees a clean session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.huey import harness
from tests.support import leakcases

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def consumer(hq: harness.Project) -> Iterator[leakcases.LeakRun]:
    hq.flush()
    with leakcases.leak_run(hq, "huey", lambda log: hq.consumer(workers=1, leak_log=log)) as run:
        yield run


def assert_clean(consumer: leakcases.LeakRun, admin: psycopg.Connection[Any]) -> None:
    """The server, the pool and the next task on the same thread all agree."""
    leakcases.assert_clean_probe(consumer.probe(), admin, "huey")


@pytest.mark.parametrize(("task", "problem", "raised"), leakcases.LEAKS, ids=leakcases.LEAK_IDS)
def test_leak_is_repaired_and_reported(
    consumer: leakcases.LeakRun,
    admin: psycopg.Connection[Any],
    task: str,
    problem: str,
    raised: str | None,
) -> None:
    marker = f"{task}-{uuid.uuid4().hex[:8]}"
    task_id = consumer.project.send(task, marker)
    outcome = consumer.project.outcome(task_id)
    assert (outcome.error or "").startswith(raised or "<none>") or (raised is None and outcome.ok)
    assert_clean(consumer, admin)
    assert leakcases.committed(admin, "hq_app", marker) == 0
    leakcases.assert_leak_record(
        consumer.log.records_of(task_id), task=task, task_id=task_id, problem=problem
    )


def test_exception_inside_atomic_rolls_back_without_a_leak(
    consumer: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"atomic-{uuid.uuid4().hex[:8]}"
    task_id = consumer.project.send("raise_in_atomic", marker)
    assert (consumer.project.outcome(task_id).error or "").startswith("ValueError")
    assert_clean(consumer, admin)
    assert leakcases.committed(admin, "hq_app", marker) == 0
    assert consumer.log.records_of(task_id) == []


def test_every_record_was_expected(consumer: leakcases.LeakRun) -> None:
    # Nothing was reported "before the task started": every end-of-task
    # clean-up finished on its own.
    assert [r for r in consumer.log.records() if "before the task" in r["message"]] == []
    assert "failed in a huey hook" not in consumer.process.output()
