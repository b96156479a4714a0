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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huey import RedisHuey
from huey.exceptions import TaskException
from huey.registry import Message

from tests.support import taskprojects
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer
from tests.support.taskprojects import Outcome, scratch_database

PROJECT_DIR = Path(__file__).resolve().parent
#: ``application_name`` of the consumer's sessions (``pgstat.sessions(admin, "huey")``).
APP_NAME = "pgrp-huey"
QUEUE_NAME = "pgrp-huey"
READY = r"Huey consumer started with"


class Project:
    """One database and one Redis server; consumers started on demand."""

    def __init__(self, dsn: str, redis: RedisServer) -> None:
        self.dsn = dsn
        self.redis = redis
        self.huey = RedisHuey(QUEUE_NAME, url=redis.url)

    def env(self, **extra: Any) -> dict[str, str]:
        """The consumer's environment; ``extra``: :func:`taskprojects.worker_env`'s."""
        return taskprojects.worker_env(
            "HQ",
            dsn=self.dsn,
            settings_module="hq_project.settings",
            app_name=APP_NAME,
            HQ_REDIS_URL=self.redis.url,
            **extra,
        )

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
        return taskprojects.start_worker(
            [sys.executable, "manage.py", "run_huey", "-k", kind, "-w", str(workers)],
            env=self.env(engine=engine, max_size=max_size, leak_log=leak_log, **env),
            cwd=PROJECT_DIR,
            name=f"huey-{kind}-{engine}",
            ready=READY,
        )

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
    """Enqueue ``tasks`` load tasks to the running consumer; wait for all of them
    (figures: :func:`tests.support.taskprojects.measure_load`)."""

    def run() -> list[Outcome]:
        ids = [proj.send("load", work_ms) for _ in range(tasks)]
        return [proj.outcome(task_id, timeout=120) for task_id in ids]

    return taskprojects.measure_load(
        proj.dsn, APP_NAME, run, tasks=tasks, workers=workers, work_ms=work_ms
    )


def stop_gracefully(consumer: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGINT: huey's graceful shutdown (workers finish their task, hooks run)."""
    consumer.signal(signal.SIGINT)
    return consumer.wait(timeout)
