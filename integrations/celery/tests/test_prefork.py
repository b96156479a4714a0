"""``celery worker -P prefork -c 2`` on a pool of 4 per child: one worker for
the module. The warm-shutdown test stops the worker: it comes last.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from integrations.celery.tests.workers import (
    LEAK_CASES,
    CeleryEnv,
    LeakCase,
    RunningWorker,
    assert_clean,
    check_leak_case,
    check_load_on_small_pools,
    check_warm_shutdown,
    running_worker,
)
from tests.support import pgstat

pytestmark = pytest.mark.e2e

CHILDREN = 2
MAX_SIZE = 4


@pytest.fixture(scope="module")
def worker(
    celery_env: CeleryEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    with running_worker(
        celery_env, tmp_path_factory.mktemp("prefork"), pool="prefork", concurrency=CHILDREN
    ) as running:
        yield running


def test_children_keep_their_pool_across_tasks(worker: RunningWorker) -> None:
    # Each child's pool outlives its tasks.
    probes = check_load_on_small_pools(worker, max_connections=CHILDREN * MAX_SIZE)
    assert len({p["pid"] for p in probes}) == CHILDREN


def test_children_start_fast_with_the_fixup_handlers_replaced(worker: RunningWorker) -> None:
    probes = worker.probes()
    for probe in probes:
        # Celery kills a child whose worker_process_init takes over 4 s.
        assert probe["process_init_seconds"] is not None
        assert probe["process_init_seconds"] < 0.5
        assert probe["prerun_receivers"] == ["_on_task_prerun"]
        assert probe["postrun_receivers"] == ["_on_task_postrun"]


@pytest.mark.parametrize("case", LEAK_CASES, ids=str)
def test_leak_is_repaired_and_reported(worker: RunningWorker, case: LeakCase) -> None:
    check_leak_case(worker, case)


def test_soft_time_limit_mid_transaction_rolls_back(worker: RunningWorker) -> None:
    key = f"soft-{uuid.uuid4().hex}"
    result = worker.send("soft_limit_in_transaction", key)
    outcome = result.get(timeout=60, propagate=False)
    assert type(outcome).__name__ == "SoftTimeLimitExceeded", outcome
    assert_clean(worker)
    assert not worker.committed(key)
    (record,) = worker.records(result.id)
    assert record["task"] == "celeryjobs.tasks.soft_limit_in_transaction"
    assert "autocommit left off (manual transaction)" in record["problems"]
    assert "transaction open on the server (INTRANS)" in record["problems"]


@pytest.mark.parametrize(
    ("task", "sigterm_heard"),
    [("hard_limit_in_transaction", True), ("hard_limit_ignoring_sigterm", False)],
)
def test_hard_time_limit_kill_leaves_no_transaction(
    worker: RunningWorker, task: str, sigterm_heard: bool
) -> None:
    key = f"hard-{uuid.uuid4().hex}"
    pids_before = {p["pid"] for p in worker.probes()}
    result = worker.send(task, key)
    # The transaction is open on the server while the task runs...
    worker.wait_for_server(lambda sessions: any(s["has_xid"] for s in sessions))
    outcome = result.get(timeout=60, propagate=False)
    assert type(outcome).__name__ == "TimeLimitExceeded", outcome
    # ...and ends with the child: rolled back by its bracket on SIGTERM, or by
    # the server when SIGKILL closed the socket.
    worker.wait_for_server(lambda sessions: not any(s["has_xid"] for s in sessions))
    assert pgstat.idle_in_transaction(worker.admin) == []
    assert not worker.committed(key)
    # The parent, which got task_failure (twice), says what happened, once.
    stopped = (
        rf"celeryjobs\.tasks\.{task} \(id {result.id}\) was stopped in "
        r"its worker child \(TimeLimitExceeded\)"
    )
    worker.process.wait_for_output(stopped)
    # A replacement child serves clean sessions next to the surviving one.
    probes = assert_clean(worker)
    pids_after = {p["pid"] for p in probes}
    assert len(pids_after) == CHILDREN and pids_after != pids_before
    assert len(re.findall(stopped, worker.process.output())) == 1
    records = worker.records(result.id)
    if sigterm_heard:
        # SIGTERM raised SystemExit in the task: task_postrun ran the bracket,
        # unless SIGKILL (0.1 s later) came first. Never more than one record.
        assert len(records) <= 1
        for record in records:
            assert "transaction open on the server (INTRANS)" in record["problems"]
    else:
        assert records == []


def test_warm_shutdown_under_load_leaves_nothing_on_the_server(worker: RunningWorker) -> None:
    check_warm_shutdown(worker, tasks=40)
    assert worker.process.output().count("closed at worker process shutdown") >= CHILDREN
