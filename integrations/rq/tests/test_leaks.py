"""Jobs that leak, one per case, on real RQ workers: cleaned, reported, harmless.

``SimpleWorker`` runs every job in its own process and thread, so each probe
runs where the leaking job ran. (The forking ``Worker``: test_fork.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.rq import harness
from tests.support.pgstat import sessions, wait_until
from tests.support.processes import ManagedProcess
from tests.support.taskprojects import LeakLog

pytestmark = pytest.mark.e2e

LEAKS = [
    # job, what the leak record must say, the job's own exception (if it raised)
    ("leak_autocommit_off", "autocommit left off", None),
    ("leak_open_cursor", "cursor(s) not closed", None),
    ("leak_pinned_exception", "pinned() block not exited", "RuntimeError"),
    ("leak_atomic_left_open", "atomic() block still open", "ValueError"),
    ("leak_search_path", "session state set outside pinned() (SET)", None),
]


class Running:
    def __init__(self, project: harness.Project, process: ManagedProcess, log: LeakLog) -> None:
        self.project = project
        self.process = process
        self.log = log


@pytest.fixture(scope="module")
def simple(rqp: harness.Project) -> Iterator[Running]:
    rqp.flush()
    log = LeakLog("rq-simple")
    process = rqp.worker(worker_class=harness.SIMPLE, leak_log=log.path)
    try:
        yield Running(rqp, process, log)
    finally:
        process.stop()
        log.remove()


def committed(admin: psycopg.Connection[Any], marker: str) -> int:
    row = admin.execute("SELECT count(*) FROM rq_app_note WHERE marker = %s", [marker]).fetchone()
    assert row is not None
    return int(row[0])


def assert_clean(project: harness.Project, admin: psycopg.Connection[Any]) -> dict[str, Any]:
    """The server and the next job (same thread under SimpleWorker) agree."""
    outcome = project.outcome(project.send("probe"))
    assert outcome.ok, outcome
    seen: dict[str, Any] = outcome.value
    assert seen["search_path"] == '"$user", public'
    assert seen["fresh_transaction"], "the probe's query ran inside an older transaction"
    assert seen["temp_tables"] == 0
    assert seen["autocommit"] is True
    assert not seen["in_atomic_block"]
    assert seen["released"], "the probe's connection was not returned after its query"
    assert seen["holders"] == {}, "a wrapper of the worker still holds a connection"
    assert wait_until(
        lambda: all(s["state"] == "idle" for s in sessions(admin, "rq")), timeout=10
    ), sessions(admin, "rq")
    return seen


def check_leak(
    running: Running, admin: psycopg.Connection[Any], job_name: str, problem: str, raised: Any
) -> None:
    marker = f"{job_name}-{uuid.uuid4().hex[:8]}"
    job = running.project.send(job_name, marker)
    outcome = running.project.outcome(job)
    assert (outcome.error or "").startswith(raised or "<none>") or (raised is None and outcome.ok)
    assert_clean(running.project, admin)
    assert committed(admin, marker) == 0
    label = f"rq_app.jobs.{job_name}"
    [record] = running.log.records_of(job.id)
    assert record["task"] == label
    assert record["alias"] == "default"
    assert any(problem in p for p in record["problems"]), record
    assert (
        f"{label} (id {job.id}) leaked on database alias 'default' at task end"
        in (record["message"])
    )


@pytest.mark.parametrize(("job_name", "problem", "raised"), LEAKS, ids=[c[0] for c in LEAKS])
def test_simple_worker_repairs_and_reports(
    simple: Running, admin: psycopg.Connection[Any], job_name: str, problem: str, raised: Any
) -> None:
    check_leak(simple, admin, job_name, problem, raised)


def test_simple_worker_keeps_one_thread(simple: Running, admin: psycopg.Connection[Any]) -> None:
    threads = {assert_clean(simple.project, admin)["thread"] for _ in range(3)}
    assert len(threads) == 1
    assert [r for r in simple.log.records() if "before the task" in r["message"]] == []
