"""Drive the RQ project: scratch database, Redis, a real ``rqworker``.

Shared by the end-to-end tests and ``benchmarks/workers_rq.py``. The worker
is django-rq's ``manage.py rqworker`` (RQ's forking ``Worker`` or its
``SimpleWorker``, through this package's worker classes); this side enqueues
jobs by import path through a bare RQ queue (no Django) and reads their
results from Redis.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.results import Result

from tests.support import taskprojects
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer
from tests.support.taskprojects import Outcome

PROJECT_DIR = Path(__file__).resolve().parent
#: ``application_name`` of the worker's sessions (``pgstat.sessions(admin, "rq")``).
APP_NAME = "pgrp-rq"
READY = r"Listening on"
FORKING = "django_pg_real_pool.rq.RealPoolWorker"
SIMPLE = "django_pg_real_pool.rq.RealPoolSimpleWorker"


class Project(taskprojects.TaskProject):
    """One database and one Redis server; workers started on demand."""

    project_dir = PROJECT_DIR
    prefix = "RQP"
    settings_module = "rq_project.settings"
    app_name = APP_NAME
    redis_env = "RQP_REDIS_URL"

    def __init__(self, dsn: str, redis: RedisServer | None) -> None:
        super().__init__(dsn, redis)
        assert redis is not None
        self.client = Redis.from_url(redis.url)
        self.queue = Queue("default", connection=self.client)

    def worker(
        self,
        *,
        worker_class: str = FORKING,
        engine: str = "real",
        max_size: int = 4,
        leak_log: Path | None = None,
        **env: str,
    ) -> ManagedProcess:
        """Start ``rqworker`` (one worker process) and wait until it listens."""
        return taskprojects.start_worker(
            [sys.executable, "manage.py", "rqworker", "default"],
            env=self.env(
                engine=engine,
                max_size=max_size,
                leak_log=leak_log,
                RQP_WORKER_CLASS=worker_class,
                **env,
            ),
            cwd=PROJECT_DIR,
            name=f"rq-{worker_class.rsplit('.', 1)[-1]}-{engine}",
            ready=READY,
        )

    def send(self, job: str, *args: Any) -> Job:
        """Enqueue ``rq_app.jobs.<job>(*args)``."""
        return self.queue.enqueue(f"rq_app.jobs.{job}", *args)

    def outcome(self, job: Job, *, timeout: int = 60) -> Outcome:
        """Wait for the job's result or failure."""
        result = job.latest_result(timeout=timeout)
        if result is None:
            raise TimeoutError(f"no result for RQ job {job.id} within {timeout}s")
        if result.type == Result.Type.SUCCESSFUL:
            return Outcome(result.return_value)
        lines = (result.exc_string or "?").strip().splitlines()
        return Outcome(error=lines[-1] if lines else "?")

    def run_load(self, tasks: int, work_ms: int) -> list[Outcome]:
        jobs = [self.send("load", work_ms) for _ in range(tasks)]
        return [self.outcome(job, timeout=120) for job in jobs]

    def flush(self) -> None:
        self.queue.empty()

    def close(self) -> None:
        self.client.close()


#: A scratch database and a Redis server for one test module or run.
project = Project.open
#: Figures of a load run on the running worker(s) (``workers``: how many).
measure_load = taskprojects.measure_load


def stop_gracefully(worker: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGTERM: RQ's warm shutdown (the current job finishes, teardown runs).

    RQ's teardown sometimes never returns: it joins redis-py's pub/sub thread,
    which can stay blocked waiting for its subscription (seen about one stop
    in four with rq 3.0 and redis-py 8.2, in RQ's code, before the worker
    classes' own teardown). A second SIGTERM is RQ's cold shutdown: SystemExit in the main thread,
    after which the worker classes still close their pools (``finally``).
    """
    worker.signal(signal.SIGTERM)
    try:
        return worker.wait(10)
    except subprocess.TimeoutExpired:
        worker.signal(signal.SIGTERM)
        return worker.wait(timeout)
