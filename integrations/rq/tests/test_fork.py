"""The forking ``Worker``: each job in a new work horse, the parent's pool untouched."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from integrations.rq import harness
from tests.support.pgstat import sessions, wait_until
from tests.support.taskprojects import LeakLog

pytestmark = pytest.mark.e2e

JOBS = 300


def test_parent_pool_survives_hundreds_of_horses(
    rqp: harness.Project, admin: psycopg.Connection[Any]
) -> None:
    rqp.flush()
    fd, name = tempfile.mkstemp(prefix="pgrp-rq-parent-", suffix=".log")
    os.close(fd)
    parent_log = Path(name)
    process = rqp.worker(
        worker_class="rq_app.workers.ParentProbingWorker", max_size=2, RQP_PARENT_LOG=name
    )
    try:
        jobs = [rqp.send("probe") for _ in range(JOBS)]
        outcomes = [rqp.outcome(job) for job in jobs]
        live = {s["pid"] for s in sessions(admin, "rq")}
    finally:
        assert harness.stop_gracefully(process) == 0
    try:
        parent_pids = [int(line) for line in parent_log.read_text().split()]
    finally:
        parent_log.unlink()
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    horse_pids = {o.value["pid"] for o in outcomes}
    # The parent queried before every fork, always on its own pooled session(s)...
    assert len(parent_pids) == JOBS
    assert set(parent_pids) <= live, "a parent session was lost between forks"
    assert len(set(parent_pids)) <= 2
    # ...which no horse ever used: each horse opened (and closed) its own.
    assert not horse_pids & set(parent_pids)
    assert len(horse_pids) == JOBS
    assert all(o.value["released"] and o.value["holders"] == {} for o in outcomes)
    assert "failed in the RQ worker" not in process.output()


def test_horse_repairs_and_reports_before_it_exits(
    rqp: harness.Project, admin: psycopg.Connection[Any]
) -> None:
    rqp.flush()
    log = LeakLog("rq-fork")
    process = rqp.worker(worker_class=harness.FORKING, leak_log=log.path)
    cases = {
        "leak_autocommit_off": ("autocommit left off", None),
        "leak_open_cursor": ("cursor(s) not closed", None),
        "leak_pinned_exception": ("pinned() block not exited", "RuntimeError"),
    }
    try:
        marker = uuid.uuid4().hex[:8]
        sent = {name: rqp.send(name, f"{name}-{marker}") for name in cases}
        outcomes = {name: rqp.outcome(job) for name, job in sent.items()}
        probe = rqp.outcome(rqp.send("probe"))
        # Each horse closed its pool before os._exit(): no session outlives it.
        assert wait_until(lambda: not sessions(admin, "rq"), timeout=10), sessions(admin, "rq")
        records = log.records()
    finally:
        assert harness.stop_gracefully(process) == 0
        log.remove()
    row = admin.execute(
        "SELECT count(*) FROM rq_app_note WHERE marker LIKE %s", [f"%-{marker}"]
    ).fetchone()
    assert row == (0,)
    for name, (problem, raised) in cases.items():
        job = sent[name]
        assert (outcomes[name].error or "").startswith(raised or "<none>") or (
            raised is None and outcomes[name].ok
        ), outcomes[name]
        [record] = [r for r in records if r["task_id"] == job.id]
        assert (
            f"rq_app.jobs.{name} (id {job.id}) leaked on database alias 'default'"
            in (record["message"])
        )
        assert any(problem in p for p in record["problems"]), record
    assert probe.ok and probe.value["search_path"] == '"$user", public'
    assert "failed in the RQ worker" not in process.output()
