"""A running worker of the example project, and the checks its tests share."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery
from celery.result import AsyncResult, ResultSet

from integrations.celery.harness import (
    LoadResult,
    ManagedProcess,
    WorkerConfig,
    client,
    run_load,
    send,
    start_worker,
)
from tests.support import pgstat

DEFAULT_SEARCH_PATH = '"$user", public'


@dataclasses.dataclass(frozen=True)
class CeleryEnv:
    dsn: str
    broker_url: str


@dataclasses.dataclass
class RunningWorker:
    config: WorkerConfig
    process: ManagedProcess
    app: Celery
    admin: psycopg.Connection[Any]

    def send(self, name: str, *args: Any, **options: Any) -> AsyncResult:
        return send(self.app, self.config.queue, name, *args, **options)

    def probes(self) -> list[dict[str, Any]]:
        """One probe per concurrency slot, all running at once (so on every
        thread of a threads worker, in every child of a prefork worker)."""
        barrier = uuid.uuid4().hex
        parties = self.config.concurrency
        results = ResultSet([self.send("probe", barrier, parties) for _ in range(parties)])
        found: list[dict[str, Any]] = results.get(timeout=60)
        return found

    def load(self, tasks: int, work_ms: int = 50) -> LoadResult:
        return run_load(self.app, self.config, tasks=tasks, work_ms=work_ms)

    def records(self, task_id: str) -> list[dict[str, Any]]:
        """The bracket's log records about ``task_id`` (JSON lines file)."""
        assert self.config.leak_log is not None
        if not self.config.leak_log.exists():
            return []
        lines = self.config.leak_log.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["task_id"] == task_id]

    def sessions(self) -> list[dict[str, Any]]:
        return pgstat.sessions(self.admin, self.config.app_name.removeprefix("pgrp-"))

    def committed(self, key: str) -> bool:
        row = self.admin.execute(
            "SELECT count(*) FROM celeryjobs_entry WHERE key = %s", [key]
        ).fetchone()
        return bool(row and row[0])

    def wait_for_server(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Until ``predicate(sessions)`` holds. The server's view changes
        asynchronously (a backend exits after its client's socket closes):
        there is no event to wait on, so poll, bounded."""
        deadline = time.monotonic() + 20
        while not predicate(sessions := self.sessions()):
            assert time.monotonic() < deadline, f"server never settled: {sessions}"
            time.sleep(0.05)

    def warm_shutdown(self, timeout: float = 60) -> int:
        """SIGTERM to the main process only, as a process manager sends it."""
        self.process.signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def running_worker(
    env: CeleryEnv, log_dir: Path, *, pool: str, concurrency: int, strict: bool = False
) -> Iterator[RunningWorker]:
    config = WorkerConfig(
        pool=pool,
        concurrency=concurrency,
        dsn=env.dsn,
        broker_url=env.broker_url,
        app_name=f"pgrp-celery-{pool}",
        strict=strict,
        leak_log=log_dir / f"bracket-{pool}.jsonl",
    )
    process = start_worker(config)
    try:
        with psycopg.connect(env.dsn, autocommit=True) as admin:
            app = client(env.broker_url)
            try:
                yield RunningWorker(config, process, app, admin)
            finally:
                app.close()
    finally:
        process.stop()


def assert_clean(worker: RunningWorker) -> list[dict[str, Any]]:
    """Every thread/process of the worker serves a clean session and holds
    nothing; the server shows no open transaction. Returns the probes."""
    probes = worker.probes()
    for probe in probes:
        assert probe["search_path"] == DEFAULT_SEARCH_PATH, probe
        assert probe["statement_timeout"] == "0", probe
        # now() is the transaction's start: equal to the statement's start
        # only in a transaction begun by this very statement.
        assert probe["fresh_transaction"] and probe["no_xid"], probe
        assert probe["holders"] == {}, probe
        assert probe["pool_timeouts"] == 0, probe
    assert pgstat.idle_in_transaction(worker.admin) == []
    return probes


def check_load_on_small_pools(
    worker: RunningWorker, *, max_connections: int, tasks: int = 400
) -> list[dict[str, Any]]:
    """``tasks`` of query, 50 ms of other work, query: every one succeeds, on
    at most ``max_connections`` backends (the pools' sizes added up), and the
    worker is clean afterwards. Returns the probes."""
    result = worker.load(tasks, work_ms=50)
    assert (result.ok, result.errors, result.pool_timeouts) == (tasks, 0, 0)
    assert result.peak_connections <= max_connections
    # Every query of every task ran on one of these backends: without the
    # engine's bracket, Celery's fixup closes a prefork child's pool at each
    # task boundary (about one backend per task).
    assert 1 <= len(result.backend_pids) <= max_connections
    return assert_clean(worker)


def leaks_counted(probes: list[dict[str, Any]]) -> int:
    """The engine's leak counter, summed over the worker's processes."""
    return sum({p["pid"]: p["leaks_counted"] for p in probes}.values())


@dataclasses.dataclass(frozen=True)
class LeakCase:
    """A task that leaves its thread's connection in a bad state."""

    task: str
    #: It writes a row (argument: the row's key) that must not be committed.
    writes: bool
    #: What the bracket must report (None: the task cleans up itself).
    problem: str | None
    #: The exception the task itself raises.
    raises: str | None = None

    def __str__(self) -> str:
        return self.task


LEAK_CASES = [
    LeakCase("leak_autocommit", writes=True, problem="transaction open on the server (INTRANS)"),
    LeakCase("leak_cursor", writes=False, problem="1 cursor(s) not closed"),
    LeakCase("leak_pinned", writes=False, problem="pinned() block not exited", raises="ValueError"),
    LeakCase("raise_in_atomic", writes=True, problem=None, raises="ValueError"),
    LeakCase("leak_search_path", writes=False, problem="session state set outside pinned() (SET)"),
]


def check_leak_case(worker: RunningWorker, case: LeakCase) -> None:
    """Run ``case`` once and check the aftermath from the server, the worker
    and the bracket's log."""
    before = leaks_counted(worker.probes())
    key = f"{case.task}-{uuid.uuid4().hex}"
    result = worker.send(case.task, *([key] if case.writes else []))
    outcome = result.get(timeout=60, propagate=False)
    strict_failure = worker.config.strict and case.problem is not None and case.raises is None
    if case.raises is not None:
        # The task's own exception is never replaced, not even in strict mode.
        assert result.state == "FAILURE" and type(outcome).__name__ == case.raises, outcome
    elif strict_failure:
        assert result.state == "FAILURE", outcome
        assert type(outcome).__name__ == "LeakedConnection", outcome
        assert case.problem is not None and case.problem in str(outcome)
        assert result.id in str(outcome)
    else:
        assert result.state == "SUCCESS", outcome

    # The probes ran on every slot, so the leaking task's bracket is done.
    probes = assert_clean(worker)
    if case.writes:
        assert not worker.committed(key)
    records = worker.records(result.id)
    if case.problem is None:
        assert records == []
        assert leaks_counted(probes) == before
        return
    assert len(records) == 1, records
    (record,) = records
    assert record["level"] == "ERROR"
    assert record["task"] == f"celeryjobs.tasks.{case.task}"
    assert record["alias"] == "default"
    assert any(case.problem in p for p in record["problems"]), record
    assert f"celeryjobs.tasks.{case.task} (id {result.id})" in record["message"]
    assert leaks_counted(probes) == before + 1


def check_warm_shutdown(worker: RunningWorker, tasks: int) -> None:
    """SIGTERM while ``tasks`` load tasks are queued or running: the worker
    finishes what it runs, closes its pools and leaves nothing on the server."""
    done = r"celeryjobs\.tasks\.load\[[^\]]+\] succeeded"
    already = len(re.findall(done, worker.process.output()))
    results = [worker.send("load", 50) for _ in range(tasks)]
    worker.process.wait_for_output(done, count=already + 3)
    assert worker.sessions(), "the load should be using the server"
    assert worker.warm_shutdown() == 0
    worker.wait_for_server(lambda sessions: sessions == [])
    log = worker.process.output()
    assert "closed at worker shutdown" in log
    # Whatever ran finished: nothing failed, the rest stays queued.
    assert not [r for r in results if r.state == "FAILURE"]
