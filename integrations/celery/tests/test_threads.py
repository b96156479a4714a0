"""``celery worker -P threads -c 16`` on a pool of 4: one worker for the module.

The warm-shutdown test stops the worker: it comes last.
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


@pytest.fixture(scope="module")
def worker(
    celery_env: CeleryEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    with running_worker(
        celery_env, tmp_path_factory.mktemp("threads"), pool="threads", concurrency=16
    ) as running:
        yield running


def test_sixteen_threads_share_four_connections(worker: RunningWorker) -> None:
    probes = check_load_on_small_pools(worker, max_connections=4)
    assert len({p["thread"] for p in probes}) == 16


def test_fixup_per_task_handlers_replaced_by_the_bracket(worker: RunningWorker) -> None:
    (probe, *_) = worker.probes()
    assert probe["prerun_receivers"] == ["_on_task_prerun"]
    assert probe["postrun_receivers"] == ["_on_task_postrun"]
    assert "replaces the per-task database handlers of Celery" in worker.process.output()


@pytest.mark.parametrize("case", LEAK_CASES, ids=str)
def test_leak_is_repaired_and_reported(worker: RunningWorker, case: LeakCase) -> None:
    check_leak_case(worker, case)


def test_warm_shutdown_under_load_leaves_nothing_on_the_server(worker: RunningWorker) -> None:
    check_warm_shutdown(worker, tasks=200)
