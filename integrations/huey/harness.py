"""Drive the huey project: scratch database, Redis, a real ``run_huey`` consumer.

Shared by the end-to-end tests and ``benchmarks/workers_huey.py``. The
consumer is django-huey's ``manage.py run_huey`` (huey's consumer with the
project's tasks autodiscovered); this side writes raw messages to the queue
through a bare ``RedisHuey`` with the same name (no Django) and reads what
the tasks stored in huey's result store.
"""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from huey import RedisHuey
from huey.exceptions import TaskException
from huey.registry import Message

from tests.support import taskprojects
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer
from tests.support.taskprojects import Outcome

PROJECT_DIR = Path(__file__).resolve().parent
#: ``application_name`` of the consumer's sessions (``pgstat.sessions(admin, "huey")``).
APP_NAME = "pgrp-huey"
QUEUE_NAME = "pgrp-huey"
READY = r"Huey consumer started with"


class Project(taskprojects.TaskProject):
    """One database and one Redis server; consumers started on demand."""

    project_dir = PROJECT_DIR
    prefix = "HQ"
    settings_module = "hq_project.settings"
    app_name = APP_NAME
    redis_env = "HQ_REDIS_URL"

    def __init__(self, dsn: str, redis: RedisServer | None) -> None:
        super().__init__(dsn, redis)
        assert redis is not None
        self.huey = RedisHuey(QUEUE_NAME, url=redis.url)

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

    def run_load(self, tasks: int, work_ms: int) -> list[Outcome]:
        ids = [self.send("load", work_ms) for _ in range(tasks)]
        return [self.outcome(task_id, timeout=120) for task_id in ids]

    def flush(self) -> None:
        self.huey.flush()

    def close(self) -> None:
        self.huey.storage.conn.close()


#: A scratch database and a Redis server for one test module or run.
project = Project.open
#: Figures of a load run on the running consumer (``workers``: its worker count).
measure_load = taskprojects.measure_load


def stop_gracefully(consumer: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGINT: huey's graceful shutdown (workers finish their task, hooks run)."""
    consumer.signal(signal.SIGINT)
    return consumer.wait(timeout)
