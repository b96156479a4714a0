"""django-tenants on ``django_pg_real_pool.tenants`` (both pools): tenant creation
and migrations, and each query on the search_path of its own tenant, whichever
connection it borrows."""

from __future__ import annotations

import os
from typing import Any

import pytest

from integrations.composed.harness import run_scenario, scratch_database
from integrations.composed.scenarios import THREADS, WRITES_PER_THREAD
from integrations.composed.settings import POOL_SIZE
from tests.support.pgserver import DSN_ENV

pytestmark = pytest.mark.e2e


@pytest.fixture(
    scope="module",
    params=[("native", "0"), ("native", "1"), ("dj", "0"), ("dj", "1")],
    ids=["native", "native-limit-set-calls", "dj", "dj-limit-set-calls"],
)
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    pool, limit = request.param
    dsn = scratch_database(os.environ[DSN_ENV], f"tenants_{pool}_{limit}")
    # TENANT_LIMIT_SET_CALLS: django-tenants skips the SET while it believes
    # the connection has the path; each borrow may be another connection.
    env = {"COMPOSED_LIMIT_SET_CALLS": limit}
    return run_scenario("tenants", dsn, backend="tenants", pool=pool, env=env)


def test_tenant_creation_migrates_each_schema(report: dict[str, Any]) -> None:
    assert report["note_tables"] == ["tenant_a", "tenant_b"]


def test_set_tenant_holds_across_borrows(report: dict[str, Any]) -> None:
    # Five and three rows written through set_tenant(), each on a borrow of
    # its own, plus each thread's rows: every row in its tenant's table.
    # Threads take tenant_a, tenant_b, public in turn.
    a_rows = len(range(0, THREADS, 3)) * WRITES_PER_THREAD
    b_rows = len(range(1, THREADS, 3)) * WRITES_PER_THREAD
    # [rows in the table, rows written]
    assert report["counts"]["tenant_a"] == [5 + a_rows, a_rows]
    assert report["counts"]["tenant_b"] == [3 + b_rows, b_rows]
    assert report["main_released"] is True


def test_search_path_never_leaks_to_another_borrower(report: dict[str, Any]) -> None:
    # 32 threads on tenant_a, tenant_b and public share the pool's 4
    # connections; the server reported each query's search_path.
    assert report["wrong_search_paths"] == []
    assert report["thread_pids"] == POOL_SIZE


def test_search_path_does_not_pin_or_leak_connections(report: dict[str, Any]) -> None:
    # django-tenants' SET search_path is configuration: no warning, nothing held.
    assert report["engine_warnings"] == []
    assert report["holders"] == {}
    assert report["sessions"] == POOL_SIZE
    assert report["idle_in_transaction"] == 0
