"""16 worker threads (32 greenlets under gevent) on a pool of 4, against Django's stock
pool; SIGTERM under load.

Each message queries, works 50 ms without the database, and queries again.
django-dramatiq's ``AdminMiddleware`` (writes in its hooks) and
``DbConnectionsMiddleware`` (which the stock engine needs to give its
connections back) are in both workers' middleware lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.dramatiq import harness
from tests.support.pgstat import sessions, wait_until

pytestmark = pytest.mark.e2e

TASKS = 400
THREADS = 16
MAX_SIZE = 4
WORK_MS = 50


@pytest.fixture(scope="module")
def real_worker(dq: harness.Project) -> Iterator[harness.ManagedProcess]:
    dq.broker.flush_all()
    log = harness.leak_log_path()
    process = dq.worker(
        threads=THREADS, max_size=MAX_SIZE, leak_log=log, DQ_DB_CONNECTIONS_MIDDLEWARE="1"
    )
    try:
        yield process
    finally:
        process.stop()
        dq.broker.flush_all()
        log.unlink()


def task_statuses(admin: psycopg.Connection[Any], figures: dict[str, Any]) -> dict[str, int]:
    ids = [o.message_id for o in figures["messages"]]
    rows = admin.execute(
        "SELECT status, count(*) FROM django_dramatiq_task WHERE id::text = ANY(%s) GROUP BY 1",
        [ids],
    ).fetchall()
    return {str(status): int(count) for status, count in rows}


def test_sixteen_threads_share_four_connections(
    dq: harness.Project, real_worker: harness.ManagedProcess, admin: psycopg.Connection[Any]
) -> None:
    figures = harness.measure_load(dq, tasks=TASKS, threads=THREADS, work_ms=WORK_MS)
    failed = [o for o in figures["outcomes"] if not o.ok]
    assert failed == []
    assert figures["pool_timeouts"] == 0
    assert figures["peak_connections"] <= MAX_SIZE
    assert len(figures["pids"]) <= MAX_SIZE
    # More messages were inside their 50 ms of work at once than the pool has
    # connections: none of them held one while working.
    assert figures["peak_concurrent_work"] > 2 * MAX_SIZE, figures
    # AdminMiddleware's writes from its own hooks all went through (the last
    # ones may still be on their way: Results stores before Admin writes).
    assert wait_until(lambda: task_statuses(admin, figures) == {"done": TASKS}, timeout=30), (
        task_statuses(admin, figures)
    )
    assert "Unexpected failure" not in real_worker.output()
    assert "leaked on database alias" not in real_worker.output()


def test_sigterm_during_load_leaves_no_session(
    dq: harness.Project, real_worker: harness.ManagedProcess, admin: psycopg.Connection[Any]
) -> None:
    # notify_shutdown: dramatiq interrupts the running actors with Shutdown,
    # an asynchronous exception that may land anywhere (mid-query included).
    messages = [dq.send("load", WORK_MS, options={"notify_shutdown": True}) for _ in range(TASKS)]
    for message in messages[: 3 * THREADS]:
        assert dq.outcome(message).ok
    assert harness.stop_gracefully(real_worker) == 0
    # The server ends a backend right after its client goes: wait for it.
    assert wait_until(lambda: not sessions(admin, "dramatiq"), timeout=10), sessions(
        admin, "dramatiq"
    )
    output = real_worker.output()
    assert "Worker has been shut down" in output
    # Interrupted waits for a pooled connection did not lose connections (the
    # pool would then run dry and the last messages time out).
    assert "PoolExhausted" not in output
    assert "failed in the dramatiq middleware" not in output
    assert "RealPoolMiddleware object" not in output


def test_gevent_greenlets_share_four_connections(
    dq: harness.Project, admin: psycopg.Connection[Any]
) -> None:
    # dramatiq-gevent: one OS thread, the worker "threads" are greenlets;
    # psycopg waits cooperatively and the engine's locks are gevent's.
    dq.broker.flush_all()
    greenlets = 2 * THREADS
    worker = dq.worker(threads=greenlets, max_size=MAX_SIZE, gevent=True)
    try:
        figures = harness.measure_load(dq, tasks=TASKS, threads=greenlets, work_ms=WORK_MS)
        assert [o for o in figures["outcomes"] if not o.ok] == []
        assert figures["peak_connections"] <= MAX_SIZE
        assert len(figures["pids"]) <= MAX_SIZE
        assert figures["peak_concurrent_work"] > 2 * MAX_SIZE, figures
        probe = dq.outcome(dq.send("probe"))
        assert probe.ok, probe
        assert probe.value["gevent"], probe.value
        assert probe.value["released"] and probe.value["holders"] == {}, probe.value
        assert harness.stop_gracefully(worker) == 0
    finally:
        worker.stop()
    assert wait_until(lambda: not sessions(admin, "dramatiq"), timeout=10), sessions(
        admin, "dramatiq"
    )
    output = worker.output()
    assert "leaked on database alias" not in output
    assert "PoolExhausted" not in output


def test_stock_pool_holds_a_connection_per_busy_thread(dq: harness.Project) -> None:
    dq.broker.flush_all()
    # Pool timeout 3 s: a wait that long is starvation, not contention.
    stock = dq.worker(threads=THREADS, engine="stock", max_size=MAX_SIZE, DQ_POOL_TIMEOUT="3")
    try:
        small = harness.measure_load(dq, tasks=TASKS, threads=THREADS, work_ms=WORK_MS)
    finally:
        stock.stop()
    assert small["peak_connections"] <= MAX_SIZE
    # Each message holds its connection through its work: at most 4 work at
    # once, so the run cannot beat tasks * work / 4 ...
    assert small["peak_concurrent_work"] <= MAX_SIZE, small
    # ... or, worse, threads time out: a thread keeps the connection that
    # AdminMiddleware's after-hook took (DbConnectionsMiddleware closed it
    # before) until its next message, and idle threads starve the busy ones.
    assert small["pool_timeouts"] > 0 or small["seconds"] >= TASKS * WORK_MS / 1000 / MAX_SIZE
    assert small["errors"] == small["pool_timeouts"]

    stock = dq.worker(threads=THREADS, engine="stock", max_size=THREADS)
    try:
        large = harness.measure_load(dq, tasks=TASKS, threads=THREADS, work_ms=WORK_MS)
    finally:
        stock.stop()
    assert large["errors"] == 0, [o for o in large["outcomes"] if not o.ok][:3]
    # Full concurrency takes a connection per busy thread.
    assert large["peak_connections"] > 2 * MAX_SIZE, large
    assert large["peak_concurrent_work"] > 2 * MAX_SIZE, large
