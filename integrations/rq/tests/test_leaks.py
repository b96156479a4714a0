"""Jobs that leak, one per case, on real RQ workers: cleaned, reported, harmless.

``SimpleWorker`` runs every job in its own process and thread, so each probe
runs where the leaking job ran. (The forking ``Worker``: test_fork.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from integrations.rq import harness
from tests.support import leakcases
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def simple(rqp: harness.Project) -> Iterator[leakcases.LeakRun]:
    rqp.flush()

    def start(log: Path) -> ManagedProcess:
        return rqp.worker(worker_class=harness.SIMPLE, leak_log=log)

    with leakcases.leak_run(rqp, "rq-simple", start) as run:
        yield run


def assert_clean(project: harness.Project, admin: psycopg.Connection[Any]) -> dict[str, Any]:
    """The server and the next job (same thread under SimpleWorker) agree."""
    outcome = project.outcome(project.send("probe"))
    assert outcome.ok, outcome
    seen: dict[str, Any] = outcome.value
    leakcases.assert_clean_probe(seen, admin, "rq")
    return seen


def check_leak(
    running: leakcases.LeakRun,
    admin: psycopg.Connection[Any],
    job_name: str,
    problem: str,
    raised: Any,
) -> None:
    marker = f"{job_name}-{uuid.uuid4().hex[:8]}"
    job = running.project.send(job_name, marker)
    outcome = running.project.outcome(job)
    assert (outcome.error or "").startswith(raised or "<none>") or (raised is None and outcome.ok)
    assert_clean(running.project, admin)
    assert leakcases.committed(admin, "rq_app", marker) == 0
    leakcases.assert_leak_record(
        running.log.records_of(job.id),
        task=f"rq_app.jobs.{job_name}",
        task_id=job.id,
        problem=problem,
        level=None,
    )


@pytest.mark.parametrize(("job_name", "problem", "raised"), leakcases.LEAKS, ids=leakcases.LEAK_IDS)
def test_simple_worker_repairs_and_reports(
    simple: leakcases.LeakRun,
    admin: psycopg.Connection[Any],
    job_name: str,
    problem: str,
    raised: Any,
) -> None:
    check_leak(simple, admin, job_name, problem, raised)


def test_simple_worker_keeps_one_thread(
    simple: leakcases.LeakRun, admin: psycopg.Connection[Any]
) -> None:
    threads = {assert_clean(simple.project, admin)["thread"] for _ in range(3)}
    assert len(threads) == 1
    assert [r for r in simple.log.records() if "before the task" in r["message"]] == []
