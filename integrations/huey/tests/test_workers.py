"""huey's worker kinds under load: 16 threads on a pool of 4, and process workers."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from integrations.huey import harness
from tests.support.pgstat import sessions, wait_until
from tests.support.taskprojects import LeakLog

pytestmark = pytest.mark.e2e

POOL = 4


def test_sixteen_threads_share_a_pool_of_four(hq: harness.Project) -> None:
    hq.flush()
    consumer = hq.consumer(workers=16, kind="thread", max_size=POOL)
    try:
        figures = harness.measure_load(hq, tasks=96, workers=16, work_ms=100)
        # A leak on one thread does not cost the others a connection.
        leaked = [hq.send("leak_autocommit_off", f"t16-{n}") for n in range(8)]
        assert all(hq.outcome(task_id).ok for task_id in leaked)
        after = harness.measure_load(hq, tasks=32, workers=16, work_ms=50)
    finally:
        assert harness.stop_gracefully(consumer) == 0
    assert figures["errors"] == 0, figures["outcomes"][:3]
    assert after["errors"] == 0, after["outcomes"][:3]
    assert figures["peak_connections"] <= POOL
    # Connections go back during the work: more tasks worked at once than
    # the pool has connections.
    assert figures["peak_concurrent_work"] > POOL
    # Graceful stop: every worker thread returned what it held; the server
    # sessions end when the consumer exits.
    assert "failed in a huey hook" not in consumer.output()


def test_process_workers_bracket_and_close_their_pools(
    hq: harness.Project, admin: psycopg.Connection[Any]
) -> None:
    hq.flush()
    log = LeakLog("huey-process")
    consumer = hq.consumer(workers=2, kind="process", max_size=2, leak_log=log.path)
    try:
        marker = f"proc-{uuid.uuid4().hex[:8]}"
        task_id = hq.send("leak_autocommit_off", marker)
        assert hq.outcome(task_id).ok
        probes = [hq.outcome(hq.send("probe")).value for _ in range(6)]
        figures = harness.measure_load(hq, tasks=16, workers=2, work_ms=20)
        assert wait_until(lambda: bool(sessions(admin, "huey")), timeout=10)
        assert all(s["state"] == "idle" for s in sessions(admin, "huey")), sessions(admin, "huey")
    finally:
        assert harness.stop_gracefully(consumer) == 0
    try:
        [record] = log.records_of(task_id)
        assert "autocommit left off" in " ".join(record["problems"])
        row = admin.execute(
            "SELECT count(*) FROM hq_app_note WHERE marker = %s", [marker]
        ).fetchone()
        assert row == (0,)
        assert all(p["released"] and p["holders"] == {} for p in probes), probes
        assert figures["errors"] == 0
        # Each process worker closed its pool at shutdown.
        assert wait_until(lambda: not sessions(admin, "huey"), timeout=10), sessions(admin, "huey")
    finally:
        log.remove()
