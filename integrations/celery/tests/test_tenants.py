"""Tenant per task on a real Celery worker (``-P threads``), replay option on (#18).

Four worker threads share a pool of two connections. Each task reads, as a
non-superuser role under a row-level security policy, the rows of its own
tenant (random among three); a task that leaves its context entered is
reported, and the next task on its thread runs with the defaults.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.celery.harness import WorkerConfig, client, peak_sampler, send, start_worker
from integrations.celery.tests.workers import CeleryEnv
from tests.support import tenantcases
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.e2e

THREADS = 4
POOL_SIZE = 2


@pytest.fixture(scope="module")
def worker(
    celery_env: CeleryEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerConfig, ManagedProcess, Any]]:
    config = WorkerConfig(
        pool="threads",
        concurrency=THREADS,
        dsn=celery_env.dsn,
        broker_url=celery_env.broker_url,
        app_name="pgrp-celery-tenants",
        max_size=POOL_SIZE,
        leak_log=tmp_path_factory.mktemp("tenants") / "bracket.jsonl",
        replay=True,
    )
    process = start_worker(config)
    app = client(celery_env.broker_url)
    try:
        yield config, process, app
    finally:
        app.close()
        process.stop()


def records(path: Path | None, task_id: str) -> list[dict[str, Any]]:
    assert path is not None
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["task_id"] == task_id]


@pytest.mark.parametrize("mode", tenantcases.MODES)
def test_each_task_reads_only_its_tenants_rows(
    worker: tuple[WorkerConfig, ManagedProcess, Any], mode: str
) -> None:
    config, _, app = worker
    tenants = tenantcases.plan(seed=len(mode))
    with peak_sampler(config.dsn, config.app_name) as peak:
        results = [send(app, config.queue, "tenant_rows", tenant, mode) for tenant in tenants]
        seen = [result.get(timeout=60) for result in results]
    wrong = [
        (tenant, tenantcases.wrong_reads(tenant, value))
        for tenant, value in zip(tenants, seen, strict=True)
        if tenantcases.wrong_reads(tenant, value)
    ]
    assert wrong == []
    assert len({value["thread"] for value in seen}) > 1, "the tasks ran on one thread"
    assert peak["peak"] <= POOL_SIZE


def test_leaked_context_is_reported_and_the_next_task_starts_from_defaults(
    worker: tuple[WorkerConfig, ManagedProcess, Any],
) -> None:
    config, _, app = worker
    result = send(app, config.queue, "leak_tenant_context", "2")
    leaked = result.get(timeout=60)
    assert tenantcases.wrong_reads("2", leaked) == []
    # Probes until one runs on the leaking thread (each batch fills every thread).
    probes: list[dict[str, Any]] = []
    for _ in range(30):
        batch = [send(app, config.queue, "tenant_probe") for _ in range(THREADS * 2)]
        probes += [r.get(timeout=60) for r in batch]
        if any(p["thread"] == leaked["thread"] for p in probes):
            break
    assert any(p["thread"] == leaked["thread"] for p in probes)
    assert [p for p in probes if not tenantcases.is_default(p)] == []
    [record] = records(config.leak_log, result.id)
    tenantcases.assert_context_leak_reported(record, "celeryjobs.tasks.leak_tenant_context")
