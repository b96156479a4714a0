"""Django Tasks on a real ``db_worker``: every leak cleaned and reported.

``db_worker`` runs one task at a time on one thread, so each probe runs where
the leaking task ran. It stores a task's result through the task's thread
before ``task_finished``: where the task leaked a transaction, that write is
inside it and the repair rolls it back (the task stays RUNNING) — the leak
record still names the task, and the worker goes on cleanly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.djtasks import harness
from tests.support import leakcases
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.e2e

#: The stored status of each leak case afterwards (see the module docstring).
STATUS = {
    "leak_autocommit_off": "RUNNING",
    "leak_open_cursor": "SUCCESSFUL",
    "leak_pinned_exception": "FAILED",
    "leak_atomic_left_open": "RUNNING",
    "leak_search_path": "SUCCESSFUL",
}


@pytest.fixture(scope="module")
def worker(tk: harness.Project) -> Iterator[leakcases.LeakRun]:
    tk.flush()

    def stop(process: ManagedProcess) -> None:
        assert harness.stop_gracefully(process) == 0

    with leakcases.leak_run(tk, "djtasks", lambda log: tk.worker(leak_log=log), stop) as run:
        yield run


def probe_clean(worker: leakcases.LeakRun, admin: psycopg.Connection[Any]) -> dict[str, Any]:
    [outcome] = worker.project.outcomes(worker.project.enqueue(("probe", [])))
    assert outcome.ok, outcome
    seen: dict[str, Any] = outcome.value
    leakcases.assert_clean_probe(seen, admin, "tasks")
    return seen


@pytest.mark.parametrize(("task", "problem", "raised"), leakcases.LEAKS, ids=leakcases.LEAK_IDS)
def test_leak_is_repaired_and_reported(
    worker: leakcases.LeakRun,
    admin: psycopg.Connection[Any],
    task: str,
    problem: str,
    raised: str | None,
) -> None:
    status = STATUS[task]
    marker = f"{task}-{uuid.uuid4().hex[:8]}"
    [task_id] = worker.project.enqueue((task, [marker]))
    # The probe runs after the leaking task on the same (only) thread.
    probe_clean(worker, admin)
    [outcome] = worker.project.outcomes([task_id], until=(status,))
    assert outcome.status == status
    assert leakcases.committed(admin, "tk_app", marker) == 0
    leakcases.assert_leak_record(
        worker.log.records_of(task_id),
        task=f"tk_app.tasks.{task}",
        task_id=task_id,
        problem=problem,
        level=None,
    )


def test_exception_inside_atomic_rolls_back_without_a_leak(
    worker: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    marker = f"atomic-{uuid.uuid4().hex[:8]}"
    [task_id] = worker.project.enqueue(("raise_in_atomic", [marker]))
    [outcome] = worker.project.outcomes([task_id])
    assert outcome.status == "FAILED"
    assert outcome.error == "builtins.ValueError"
    probe_clean(worker, admin)
    assert leakcases.committed(admin, "tk_app", marker) == 0
    assert worker.log.records_of(task_id) == []


def test_load_on_a_pool_of_two(tk: harness.Project, worker: leakcases.LeakRun) -> None:
    figures = harness.measure_load(tk, tasks=20, workers=1, work_ms=20)
    assert figures["errors"] == 0, figures["outcomes"][:3]
    assert figures["peak_connections"] <= 4
    assert [r for r in worker.log.records() if "before the task" in r["message"]] == []
    assert "failed in a Django Tasks signal" not in worker.process.output()


def test_check_warns_when_the_hookup_is_missing(tk: harness.Project) -> None:
    missing = tk.manage("check", TK_HOOKED="0").stderr
    assert "django_pg_real_pool.W501" in missing, missing
    assert "W501" not in tk.manage("check").stderr
