"""Tenant per message on a real dramatiq worker, replay option on (#18).

Four worker threads share a pool of two connections. Each message reads,
as a non-superuser role under a row-level security policy, the rows of its
own tenant (random among three); a message that leaves its context entered
is reported, and the next message on its thread runs with the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.dramatiq import harness
from tests.support import tenantcases
from tests.support.processes import ManagedProcess
from tests.support.taskprojects import LeakLog, SessionSampler

pytestmark = pytest.mark.e2e

THREADS = 4
POOL_SIZE = 2


@pytest.fixture(scope="module")
def worker(dq: harness.Project) -> Iterator[tuple[ManagedProcess, LeakLog]]:
    dq.broker.flush_all()
    log = LeakLog("dramatiq-tenants")
    process = dq.worker(threads=THREADS, max_size=POOL_SIZE, leak_log=log.path, DQ_REPLAY="1")
    try:
        yield process, log
    finally:
        process.stop()
        log.remove()


@pytest.mark.parametrize("mode", tenantcases.MODES)
def test_each_message_reads_only_its_tenants_rows(
    dq: harness.Project, worker: tuple[ManagedProcess, LeakLog], mode: str
) -> None:
    tenants = tenantcases.plan(seed=len(mode))
    with SessionSampler(dq.dsn, harness.APP_NAME) as sampler:
        messages = [dq.send("tenant_rows", tenant, mode) for tenant in tenants]
        outcomes = [dq.outcome(message) for message in messages]
    assert [o for o in outcomes if not o.ok] == []
    wrong = [
        (tenant, tenantcases.wrong_reads(tenant, o.value))
        for tenant, o in zip(tenants, outcomes, strict=True)
        if tenantcases.wrong_reads(tenant, o.value)
    ]
    assert wrong == []
    assert len({o.value["thread"] for o in outcomes}) > 1, "the messages ran on one thread"
    assert sampler.peak() <= POOL_SIZE


def test_leaked_context_is_reported_and_the_next_message_starts_from_defaults(
    dq: harness.Project, worker: tuple[ManagedProcess, LeakLog]
) -> None:
    _, log = worker
    message = dq.send("leak_tenant_context", "2")
    leaked = dq.outcome(message)
    assert leaked.ok, leaked
    assert tenantcases.wrong_reads("2", leaked.value) == []
    # Probes until one runs on the leaking thread (each batch fills every thread).
    probes = []
    for _ in range(30):
        batch = [dq.send("tenant_probe") for _ in range(THREADS * 2)]
        probes += [dq.outcome(m).value for m in batch]
        if any(p["thread"] == leaked.value["thread"] for p in probes):
            break
    assert any(p["thread"] == leaked.value["thread"] for p in probes)
    assert [p for p in probes if not tenantcases.is_default(p)] == []
    [record] = log.records_of(message.message_id)
    tenantcases.assert_context_leak_reported(record, "leak_tenant_context")
