"""What the e2e projects of the task runners (dramatiq, huey, RQ, ...) share.

A scratch database migrated by a project's ``manage.py``, the environment of
its workers, starting one and waiting until it consumes, the JSON-lines leak
log its workers write, what a task ended with, the peak of its sessions on
the server and the figures of a load run. Each
``integrations/<runner>/harness.py`` builds on these.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import psycopg

from tests.support.pgserver import DSN_ENV
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer


@contextlib.contextmanager
def scratch_database(
    server_dsn: str, name: str, project_dir: Path, env: dict[str, str]
) -> Iterator[str]:
    """A new database migrated by ``project_dir/manage.py``; dropped at exit."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=project_dir,
            env={**os.environ, **env, DSN_ENV: dsn},
            check=True,
            timeout=180,
            capture_output=True,
        )
        yield dsn
    finally:
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def worker_env(
    prefix: str,
    *,
    dsn: str,
    settings_module: str,
    app_name: str,
    engine: str = "real",
    max_size: int = 4,
    leak_log: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment a project's worker reads (see ``integrations/_common/settings.py``)."""
    return {
        DSN_ENV: dsn,
        "DJANGO_SETTINGS_MODULE": settings_module,
        f"{prefix}_APP_NAME": app_name,
        f"{prefix}_ENGINE": engine,
        f"{prefix}_POOL_MAX_SIZE": str(max_size),
        f"{prefix}_LEAK_LOG": str(leak_log or ""),
        **extra,
    }


def start_worker(
    args: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    name: str,
    ready: str,
    timeout: float = 120,
) -> ManagedProcess:
    """Start ``args`` in ``cwd`` and return once its log matched ``ready``
    (stopped again if it did not)."""
    process = ManagedProcess(args, env=env, cwd=cwd, name=name).start()
    try:
        process.wait_for_output(ready, timeout=timeout)
    except BaseException:
        process.stop()
        raise
    return process


class Outcome:
    """What one task ended with: its result, or its error (and the error's text)."""

    def __init__(self, value: Any = None, error: str | None = None, text: str = "") -> None:
        self.value = value
        self.error = error
        self.text = text

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        if self.ok:
            return f"Outcome(value={self.value!r})"
        return f"Outcome({self.error}: {self.text})" if self.text else f"Outcome({self.error})"


class LeakLog:
    """A temporary file the worker's bracket writes its leak records to (JSON lines)."""

    def __init__(self, prefix: str) -> None:
        fd, path = tempfile.mkstemp(prefix=f"pgrp-{prefix}-leaks-", suffix=".jsonl")
        os.close(fd)
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def records_of(self, task_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["task_id"] == task_id]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class SessionSampler:
    """Peak number of server sessions named ``app_name``, sampled on its own thread."""

    def __init__(self, dsn: str, app_name: str, interval: float = 0.01) -> None:
        self.dsn = dsn
        self.app_name = app_name
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
                        [self.app_name],
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


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at the same instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


class TaskProject:
    """A task-queue project's scratch database (and Redis server) as its
    harness drives it; workers are started on demand by the subclass.

    Subclasses name the project (the class attributes) and say how load
    tasks are sent and awaited (:meth:`run_load`).
    """

    #: The project's directory (its ``manage.py``).
    project_dir: ClassVar[Path]
    #: Its settings' variable prefix (``integrations/_common/settings.py``).
    prefix: ClassVar[str]
    settings_module: ClassVar[str]
    #: ``application_name`` of its workers' sessions.
    app_name: ClassVar[str]
    #: The variable its settings read the Redis URL from (``""``: no Redis).
    redis_env: ClassVar[str] = ""

    def __init__(self, dsn: str, redis: RedisServer | None) -> None:
        self.dsn = dsn
        self.redis = redis

    @classmethod
    @contextlib.contextmanager
    def open(cls, server_dsn: str, name: str) -> Iterator[Self]:
        """A scratch database ``name`` (and a Redis server) for one test module or run."""
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(RedisServer()) if cls.redis_env else None
            env = {cls.redis_env: redis.url} if redis is not None else {}
            dsn = stack.enter_context(scratch_database(server_dsn, name, cls.project_dir, env))
            proj = cls(dsn, redis)
            stack.callback(proj.close)
            yield proj

    def env(self, app_name: str = "", **extra: Any) -> dict[str, str]:
        """A worker's (or ``manage.py`` command's) environment; ``extra``:
        :func:`worker_env`'s keywords and more variables."""
        if self.redis is not None:
            extra[self.redis_env] = self.redis.url
        return worker_env(
            self.prefix,
            dsn=self.dsn,
            settings_module=self.settings_module,
            app_name=app_name or self.app_name,
            **extra,
        )

    def manage(
        self, *args: str, check: bool = False, app_name: str = "", **env: Any
    ) -> subprocess.CompletedProcess[str]:
        """``manage.py *args`` in the project with :meth:`env` (``env``: more of
        it); its output captured as text. ``check``: raise if it fails."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.project_dir,
            env={**os.environ, **self.env(app_name, **env)},
            capture_output=True,
            text=True,
            timeout=180,
            check=check,
        )

    def run_load(self, tasks: int, work_ms: int) -> Sequence[Any]:
        """Send ``tasks`` load tasks to the running workers; their outcomes."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the clients this side opened."""


def measure_load(
    proj: TaskProject,
    *,
    tasks: int,
    workers: int,
    work_ms: int,
    run: Callable[[], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Time ``proj.run_load(tasks, work_ms)`` (or ``run()``) on the running
    workers while sampling the server's sessions of ``proj.app_name``.

    Returns ``tasks``, ``seconds``, ``throughput``, ``ideal`` (``workers``
    busy ``work_ms`` each, back to back), ``ratio``, ``peak_connections``,
    ``errors``, ``pool_timeouts``, ``peak_concurrent_work`` (most tasks inside
    their non-database work at once: above the pool size, they were not
    holding a connection during it), ``pids`` (the distinct backends the
    tasks saw) and ``outcomes``. An outcome has ``ok``, ``value`` (the load
    task's result) and ``error`` (its text names ``PoolTimedOut`` on a pool
    timeout).
    """
    ideal = workers / (work_ms / 1000) if work_ms else float("inf")
    with SessionSampler(proj.dsn, proj.app_name) as sampler:
        start = time.monotonic()
        outcomes = run() if run is not None else proj.run_load(tasks, work_ms)
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
