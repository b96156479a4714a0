"""``celery worker -P gevent`` and ``-P eventlet``, 32 green threads on a pool of 4.

Every task runs in a greenlet of one OS thread, and Django's connections are
per greenlet. The worker monkey-patches the standard library before anything
else loads, so the engine's locks and its sweeper thread are green ones too.
psycopg (3.1.14+) waits cooperatively under gevent; under eventlet it does
not (a query holds up the worker's other green threads until it returns), and
eventlet's patching removes ``select.poll``, which the engine's health check
then replaces with ``select.select``. One worker per pool for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.celery.tests.workers import (
    LEAK_CASES,
    CeleryEnv,
    LeakCase,
    RunningWorker,
    check_leak_case,
    check_load_on_small_pools,
    check_warm_shutdown,
    running_worker,
)

pytestmark = pytest.mark.e2e

GREEN_THREADS = 32


@pytest.fixture(scope="module", params=["gevent", "eventlet"])
def worker(
    request: pytest.FixtureRequest,
    celery_env: CeleryEnv,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningWorker]:
    pool = request.param
    with running_worker(
        celery_env, tmp_path_factory.mktemp(pool), pool=pool, concurrency=GREEN_THREADS
    ) as running:
        yield running


def test_green_threads_share_four_connections(worker: RunningWorker) -> None:
    probes = check_load_on_small_pools(worker, max_connections=4)
    # One process, one OS thread: every probe ran in a green thread of its own.
    assert len({p["pid"] for p in probes}) == 1
    assert len({p["thread"] for p in probes}) == GREEN_THREADS


@pytest.mark.parametrize("case", LEAK_CASES, ids=str)
def test_leak_is_repaired_and_reported(worker: RunningWorker, case: LeakCase) -> None:
    check_leak_case(worker, case)


def test_warm_shutdown_under_load_leaves_nothing_on_the_server(worker: RunningWorker) -> None:
    check_warm_shutdown(worker, tasks=200)
