"""Drive the integration project: scratch database, Redis, real dramatiq workers.

Shared by the end-to-end tests and ``benchmarks/workers_dramatiq.py``. The
worker is the real CLI (``manage.py rundramatiq`` execs ``dramatiq``); this
side sends raw messages through its own broker (no middleware, no Django) and
reads what the actors stored in the Redis result backend.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import ResultFailure
from dramatiq.results.backends.redis import RedisBackend
from redis import Redis

from tests.support import taskprojects
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer
from tests.support.taskprojects import LeakLog, Outcome

PROJECT_DIR = Path(__file__).resolve().parent
QUEUE = "default"
#: ``application_name`` of the worker's sessions (what
#: ``tests.support.pgstat.sessions(admin, "dramatiq")`` looks for).
APP_NAME = "pgrp-dramatiq"
READY = r"Worker process is ready for action"


class Project(taskprojects.TaskProject):
    """One database and one Redis server; workers started on demand."""

    project_dir = PROJECT_DIR
    prefix = "DQ"
    settings_module = "dq_project.settings"
    app_name = APP_NAME
    redis_env = "DQ_REDIS_URL"

    def __init__(self, dsn: str, redis: RedisServer | None) -> None:
        super().__init__(dsn, redis)
        assert redis is not None
        self.broker = RedisBroker(url=redis.url, middleware=[])
        # Declared so that flush_all() knows it (the actors live in the worker).
        self.broker.declare_queue(QUEUE)
        # redis-py's default 5 s socket timeout would cut blocking waits short.
        self.results = RedisBackend(client=Redis.from_url(redis.url, socket_timeout=300))

    def worker(
        self,
        *,
        threads: int,
        engine: str = "real",
        max_size: int = 4,
        leak_log: Path | None = None,
        gevent: bool = False,
        **env: str,
    ) -> ManagedProcess:
        """Start ``rundramatiq`` (one process) and wait until it consumes;
        ``gevent``: its worker threads are greenlets (``dramatiq-gevent``)."""
        return taskprojects.start_worker(
            [
                sys.executable,
                "manage.py",
                "rundramatiq",
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--worker-shutdown-timeout",
                "30000",
                *(["--use-gevent"] if gevent else []),
            ],
            env=self.env(engine=engine, max_size=max_size, leak_log=leak_log, **env),
            cwd=PROJECT_DIR,
            name=f"dramatiq-{engine}",
            ready=READY,
        )

    def send(
        self,
        actor: str,
        *args: Any,
        options: dict[str, Any] | None = None,
        delay: int | None = None,
        **kwargs: Any,
    ) -> Message[Any]:
        message: Message[Any] = Message(
            queue_name=QUEUE,
            actor_name=actor,
            args=args,
            kwargs=kwargs,
            options=dict(options or {}),
        )
        self.broker.enqueue(message, delay=delay)
        return message

    def outcome(self, message: Message[Any], *, timeout: float = 60.0) -> Outcome:
        """Wait for the message's stored result or exception."""
        try:
            value = self.results.get_result(message, block=True, timeout=int(timeout * 1000))
        except ResultFailure as exc:
            return Outcome(error=exc.orig_exc_type, text=exc.orig_exc_msg)
        return Outcome(value)

    def stored_outcome(self, message: Message[Any]) -> Outcome:
        """The outcome already stored (after a later message on the same thread ran)."""
        try:
            value = self.results.get_result(message, block=False)
        except ResultFailure as exc:
            return Outcome(error=exc.orig_exc_type, text=exc.orig_exc_msg)
        return Outcome(value)

    def dead_lettered(self) -> set[str]:
        """Ids of the messages in the queue's dead-letter set."""
        client = self.broker.client
        raw = client.hvals(f"{self.broker.namespace}:{QUEUE}.XQ.msgs")
        return {Message.decode(data).message_id for data in raw if isinstance(data, bytes)}

    def close(self) -> None:
        self.broker.close()
        self.results.client.close()


#: A scratch database and a Redis server for one test module or run.
project = Project.open


# -- load ----------------------------------------------------------------------------


def measure_load(
    proj: Project,
    *,
    tasks: int,
    threads: int,
    work_ms: int,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``tasks`` load messages to the running worker; wait for all of them.

    Returns the figures of :func:`benchmarks.workers_dramatiq.run_row` plus
    ``peak_concurrent_work`` (most messages inside their non-database work at
    once: above the pool size, they were not holding a connection during it),
    ``pids`` (the distinct backends the actors saw), ``messages`` and ``outcomes``.
    """
    messages: list[Message[Any]] = []

    def run() -> list[Outcome]:
        messages.extend(proj.send("load", work_ms, options=options) for _ in range(tasks))
        return [proj.outcome(m, timeout=120) for m in messages]

    figures = taskprojects.measure_load(
        proj, tasks=tasks, workers=threads, work_ms=work_ms, run=run
    )
    return {**figures, "messages": messages}


def stop_gracefully(worker: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGTERM to dramatiq's main process only (it forwards it to its workers;
    a second SIGTERM would make them exit without shutting down)."""
    worker.signal(signal.SIGTERM)
    return worker.wait(timeout)


def leak_log_path() -> Path:
    """A new, empty file for the worker's leak records (``DQ_LEAK_LOG``)."""
    return LeakLog("dramatiq").path
