"""Drive the integration project: scratch database, Redis, real dramatiq workers.

Shared by the end-to-end tests and ``benchmarks/workers_dramatiq.py``. The
worker is the real CLI (``manage.py rundramatiq`` execs ``dramatiq``); this
side sends raw messages through its own broker (no middleware, no Django) and
reads what the actors stored in the Redis result backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import ResultFailure
from dramatiq.results.backends.redis import RedisBackend
from redis import Redis

from tests.support.pgserver import DSN_ENV
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer

PROJECT_DIR = Path(__file__).resolve().parent
QUEUE = "default"
#: ``application_name`` of the worker's sessions (what
#: ``tests.support.pgstat.sessions(admin, "dramatiq")`` looks for).
APP_NAME = "pgrp-dramatiq"
READY = r"Worker process is ready for action"


@contextlib.contextmanager
def scratch_database(server_dsn: str, name: str) -> Iterator[str]:
    """A new, migrated database on the server of ``server_dsn``; dropped at exit."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=PROJECT_DIR,
            env={**os.environ, DSN_ENV: dsn},
            check=True,
            timeout=180,
            capture_output=True,
        )
        yield dsn
    finally:
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Outcome:
    """What one message ended with: its result, or its exception's type and text."""

    def __init__(self, value: Any = None, error: str | None = None, text: str = "") -> None:
        self.value = value
        self.error = error
        self.text = text

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        return (
            f"Outcome(value={self.value!r})" if self.ok else f"Outcome({self.error}: {self.text})"
        )


class Project:
    """One database and one Redis server; workers started on demand."""

    def __init__(self, dsn: str, redis: RedisServer) -> None:
        self.dsn = dsn
        self.redis = redis
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
        settings_env = {
            DSN_ENV: self.dsn,
            "DJANGO_SETTINGS_MODULE": "dq_project.settings",
            "DQ_REDIS_URL": self.redis.url,
            "DQ_ENGINE": engine,
            "DQ_POOL_MAX_SIZE": str(max_size),
            "DQ_APP_NAME": APP_NAME,
            "DQ_LEAK_LOG": str(leak_log or ""),
            **env,
        }
        process = ManagedProcess(
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
            env=settings_env,
            cwd=PROJECT_DIR,
            name=f"dramatiq-{engine}",
        ).start()
        try:
            process.wait_for_output(READY, timeout=120)
        except BaseException:
            process.stop()
            raise
        return process

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


@contextlib.contextmanager
def project(server_dsn: str, name: str) -> Iterator[Project]:
    """A scratch database and a Redis server for one test module or run."""
    with scratch_database(server_dsn, name) as dsn, RedisServer() as redis:
        proj = Project(dsn, redis)
        try:
            yield proj
        finally:
            proj.close()


# -- load ----------------------------------------------------------------------------


class SessionSampler:
    """Peak number of server sessions of the worker (by ``application_name``),
    sampled from its own connection and thread."""

    def __init__(self, dsn: str, interval: float = 0.01) -> None:
        self.dsn = dsn
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sessions", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        [APP_NAME],
                    ).fetchone()
                    assert row is not None
                    self.samples.append(int(row[0]))
                    self._stop.wait(self.interval)
        except BaseException as exc:  # re-raised by peak(): a gap in the figures
            self._error = exc

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def peak(self) -> int:
        if self._error is not None:
            raise RuntimeError("sampling pg_stat_activity failed") from self._error
        return max(self.samples, default=0)


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
    ideal = threads / (work_ms / 1000) if work_ms else float("inf")
    with SessionSampler(proj.dsn) as sampler:
        start = time.monotonic()
        messages = [proj.send("load", work_ms, options=options) for _ in range(tasks)]
        outcomes = [proj.outcome(m, timeout=120) for m in messages]
        seconds = time.monotonic() - start
    throughput = tasks / seconds
    done = [o.value for o in outcomes if o.ok]
    return {
        "tasks": tasks,
        "seconds": seconds,
        "throughput": throughput,
        "ideal": ideal,
        "ratio": throughput / ideal,
        "peak_connections": sampler.peak(),
        "errors": sum(not o.ok for o in outcomes),
        "pool_timeouts": sum(o.error == "PoolTimedOut" for o in outcomes),
        "peak_concurrent_work": peak_overlap([tuple(v["work"]) for v in done]),
        "pids": {pid for v in done for pid in v["pids"]},
        "messages": messages,
        "outcomes": outcomes,
    }


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at the same instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def stop_gracefully(worker: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGTERM to dramatiq's main process only (it forwards it to its workers;
    a second SIGTERM would make them exit without shutting down)."""
    worker.signal(signal.SIGTERM)
    return worker.wait(timeout)


def leak_log_path() -> Path:
    fd, path = tempfile.mkstemp(prefix="pgrp-dramatiq-leaks-", suffix=".jsonl")
    os.close(fd)
    return Path(path)
