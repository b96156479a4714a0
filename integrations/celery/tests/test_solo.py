"""``celery worker -P solo`` in strict mode: a leak fails the task.

One worker for the module; the warm-shutdown test stops it and comes last.
"""

from __future__ import annotations

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
    check_warm_shutdown,
    running_worker,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker(
    celery_env: CeleryEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    with running_worker(
        celery_env, tmp_path_factory.mktemp("solo"), pool="solo", concurrency=1, strict=True
    ) as running:
        yield running


def test_clean_task_succeeds_in_strict_mode(worker: RunningWorker) -> None:
    key = f"write-{uuid.uuid4().hex}"
    result = worker.send("write", key)
    assert isinstance(result.get(timeout=60), int)
    assert worker.committed(key)
    assert worker.records(result.id) == []
    (probe,) = assert_clean(worker)
    assert probe["prerun_receivers"] == ["_on_task_prerun"]
    assert "(strict=True)" in worker.process.output()


@pytest.mark.parametrize("case", LEAK_CASES, ids=str)
def test_leak_fails_the_task_in_strict_mode(worker: RunningWorker, case: LeakCase) -> None:
    check_leak_case(worker, case)


def test_leaked_connection_reaches_the_waiting_caller(worker: RunningWorker) -> None:
    # The caller is already blocked in get() when the task ends: the failure
    # must be what it receives, not a SUCCESS published before task_postrun.
    result = worker.send("leak_autocommit", f"wait-{uuid.uuid4().hex}")
    with pytest.raises(Exception, match=r"ended holding database state") as raised:
        result.get(timeout=60)
    assert type(raised.value).__name__ == "LeakedConnection"
    assert_clean(worker)


def test_warm_shutdown_under_load_leaves_nothing_on_the_server(worker: RunningWorker) -> None:
    check_warm_shutdown(worker, tasks=20)
