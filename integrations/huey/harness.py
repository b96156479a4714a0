"""Drive the huey project: scratch database, Redis, a real ``run_huey`` consumer.

Shared by the end-to-end tests and ``benchmarks/workers_huey.py``. The
consumer is django-huey's ``manage.py run_huey`` (huey's consumer with the
project's tasks autodiscovered); this side writes raw messages to the queue
through a bare ``RedisHuey`` with the same name (no Django) and reads what
the tasks stored in huey's result store.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huey import RedisHuey
from huey.exceptions import TaskException
from huey.registry import Message

from tests.support.pgserver import DSN_ENV
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer
from tests.support.taskprojects import SessionSampler, peak_overlap, scratch_database

PROJECT_DIR = Path(__file__).resolve().parent
#: ``application_name`` of the consumer's sessions (``pgstat.sessions(admin, "huey")``).
APP_NAME = "pgrp-huey"
QUEUE_NAME = "pgrp-huey"
READY = r"Huey consumer started with"


class Outcome:
    """What one task ended with: its result, or its error's repr."""

    def __init__(self, value: Any = None, error: str | None = None) -> None:
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        return f"Outcome(value={self.value!r})" if self.ok else f"Outcome({self.error})"


class Project:
    """One database and one Redis server; consumers started on demand."""

    def __init__(self, dsn: str, redis: RedisServer) -> None:
        self.dsn = dsn
        self.redis = redis
        self.huey = RedisHuey(QUEUE_NAME, url=redis.url)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            DSN_ENV: self.dsn,
            "DJANGO_SETTINGS_MODULE": "hq_project.settings",
            "HQ_REDIS_URL": self.redis.url,
            "HQ_APP_NAME": APP_NAME,
            **extra,
        }

    def consumer(
        self,
        *,
        workers: int,
        kind: str = "thread",
        engine: str = "real",
        max_size: int = 4,
        leak_log: Path | None = None,
        **env: str,
    ) -> ManagedProcess:
        """Start ``run_huey -k kind -w workers`` and wait until it consumes."""
        process = ManagedProcess(
            [sys.executable, "manage.py", "run_huey", "-k", kind, "-w", str(workers)],
            env=self.env(
                HQ_ENGINE=engine,
                HQ_POOL_MAX_SIZE=str(max_size),
                HQ_LEAK_LOG=str(leak_log or ""),
                **env,
            ),
            cwd=PROJECT_DIR,
            name=f"huey-{kind}-{engine}",
        ).start()
        try:
            process.wait_for_output(READY, timeout=120)
        except BaseException:
            process.stop()
            raise
        return process

    def send(self, task: str, *args: Any) -> str:
        """Enqueue ``hq_app.tasks.<task>(*args)``; its id."""
        task_id = str(uuid.uuid4())
        message = Message(
            task_id, f"hq_app.tasks.{task}", None, 0, 0, None, args, {},
            None, None, None, None, None, None, 0,
        )  # fmt: skip
        self.huey.storage.enqueue(self.huey.serializer.serialize(message))
        return task_id

    def outcome(self, task_id: str, *, timeout: float = 60.0) -> Outcome:
        """Wait for the task's stored result or error."""
        try:
            # Short polls: huey's default back-off (up to 1 s) would hide throughput.
            value = self.huey.result(
                task_id, blocking=True, timeout=timeout, backoff=1.1, max_delay=0.05, preserve=True
            )
        except TaskException as exc:
            return Outcome(error=str(exc))
        return Outcome(value)

    def flush(self) -> None:
        self.huey.flush()

    def close(self) -> None:
        self.huey.storage.conn.close()


@contextlib.contextmanager
def project(server_dsn: str, name: str) -> Iterator[Project]:
    """A scratch database and a Redis server for one test module or run."""
    with (
        RedisServer() as redis,
        scratch_database(server_dsn, name, PROJECT_DIR, {"HQ_REDIS_URL": redis.url}) as dsn,
    ):
        proj = Project(dsn, redis)
        try:
            yield proj
        finally:
            proj.close()


def measure_load(proj: Project, *, tasks: int, workers: int, work_ms: int) -> dict[str, Any]:
    """Enqueue ``tasks`` load tasks to the running consumer; wait for all of them.

    Figures as :func:`benchmarks.workers_dramatiq.run_row` reports them.
    """
    ideal = workers / (work_ms / 1000) if work_ms else float("inf")
    with SessionSampler(proj.dsn, APP_NAME) as sampler:
        start = time.monotonic()
        ids = [proj.send("load", work_ms) for _ in range(tasks)]
        outcomes = [proj.outcome(task_id, timeout=120) for task_id in ids]
        seconds = time.monotonic() - start
    done = [o.value for o in outcomes if o.ok]
    return {
        "tasks": tasks,
        "seconds": seconds,
        "throughput": tasks / seconds,
        "ideal": ideal,
        "ratio": tasks / seconds / ideal,
        "peak_connections": sampler.peak(),
        "errors": sum(not o.ok for o in outcomes),
        "pool_timeouts": sum("PoolTimedOut" in (o.error or "") for o in outcomes),
        "peak_concurrent_work": peak_overlap([tuple(v["work"]) for v in done]),
        "pids": {pid for v in done for pid in v["pids"]},
        "outcomes": outcomes,
    }


def stop_gracefully(consumer: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGINT: huey's graceful shutdown (workers finish their task, hooks run)."""
    consumer.signal(signal.SIGINT)
    return consumer.wait(timeout)
