"""django-prometheus' backend on ``django_pg_real_pool.prometheus`` (both pools):
its metrics still count, and the engine still releases after each query."""

from __future__ import annotations

import os
from typing import Any

import pytest

from integrations.composed.harness import run_scenario, scratch_database
from integrations.composed.scenarios import THREADS, WRITES_PER_THREAD
from integrations.composed.settings import POOL_SIZE
from tests.support.pgserver import DSN_ENV

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["native", "dj"])
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    pool: str = request.param
    dsn = scratch_database(os.environ[DSN_ENV], f"prometheus_{pool}")
    return run_scenario("prometheus", dsn, backend="prometheus", pool=pool)


def test_statement_metrics_count(report: dict[str, Any]) -> None:
    # 20 inserts, 20 pg_backend_pid() queries, an executemany of 2 rows.
    assert report["executed"] == 42
    assert report["executed_many"] == 2
    assert report["rows"] == 22


def test_new_connections_count_physical_connections(report: dict[str, Any]) -> None:
    # Borrowing skips get_new_connection(), where django-prometheus counts:
    # each physical connection the pool opened is counted once.
    assert report["new_connections"] == report["server_backends"] == POOL_SIZE


def test_engine_still_releases(report: dict[str, Any]) -> None:
    assert report["released"] is True
    assert report["threads_released"] == THREADS
    assert report["rows_after_threads"] == 22 + THREADS * WRITES_PER_THREAD
    assert len(report["thread_pids"]) == POOL_SIZE
    assert report["sessions"] == POOL_SIZE
    assert report["idle_in_transaction"] == 0
