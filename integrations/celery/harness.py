"""Drive the example project: its database, a real Celery worker, a load.

Shared by the end-to-end tests (``integrations/celery/tests``) and the
benchmark (``benchmarks/workers_celery.py``). Everything targets 127.0.0.1;
every process started here is stopped by its caller (``ManagedProcess``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery
from celery.result import AsyncResult, ResultSet

from tests.support import pgstat
from tests.support.processes import ManagedProcess

PROJECT_DIR = Path(__file__).resolve().parent
REPO_DIR = PROJECT_DIR.parent.parent


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo("", **params)


def create_database(server_dsn: str, name: str) -> str:
    """A fresh database ``name`` on the server, migrated for the project; its DSN."""
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = dsn_with_dbname(server_dsn, name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=project_env(dsn=dsn, broker_url="redis://127.0.0.1:1/0"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dsn


def drop_database(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def project_env(*, dsn: str, broker_url: str, **extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(
        p for p in (str(PROJECT_DIR), str(REPO_DIR), os.environ.get("PYTHONPATH")) if p
    )
    return {
        "DJANGO_SETTINGS_MODULE": "celeryproj.settings",
        "DJANGO_PG_REAL_POOL_TEST_DSN": dsn,
        "PGRP_CELERY_BROKER_URL": broker_url,
        "PYTHONPATH": pythonpath,
        **extra,
    }


@dataclasses.dataclass
class WorkerConfig:
    pool: str  # prefork | threads | solo
    concurrency: int
    dsn: str
    broker_url: str
    app_name: str
    engine: str = "real"  # real | stock
    max_size: int = 4
    strict: bool = False
    leak_log: Path | None = None
    #: ``PGRP_CELERY_REPLAY=1``: the replay option on (the tenant cases).
    replay: bool = False

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celeryproj",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.app_name}@%h",
            # One queue per worker: a later worker never gets an earlier one's
            # requeued messages.
            "-Q",
            self.queue,
        ]

    @property
    def queue(self) -> str:
        return self.app_name

    def env(self) -> dict[str, str]:
        extra = {
            "PGRP_CELERY_ENGINE": self.engine,
            "PGRP_CELERY_MAX_SIZE": str(self.max_size),
            "PGRP_CELERY_APP_NAME": self.app_name,
            "PGRP_CELERY_STRICT": "1" if self.strict else "0",
            "PGRP_CELERY_REPLAY": "1" if self.replay else "0",
            # Django's system checks at worker start: slow, and not tested here.
            "CELERY_SKIP_CHECKS": "1",
        }
        if self.leak_log is not None:
            extra["PGRP_CELERY_LEAK_LOG"] = str(self.leak_log)
        return project_env(dsn=self.dsn, broker_url=self.broker_url, **extra)


def start_worker(config: WorkerConfig, timeout: float = 90) -> ManagedProcess:
    """A real ``celery worker`` on the project, returned once it is ready."""
    worker = ManagedProcess(
        config.command(), env=config.env(), cwd=PROJECT_DIR, name=f"celery-{config.pool}"
    )
    worker.start()
    try:
        worker.wait_for_output(r"\bready\.", timeout=timeout)
    except BaseException:
        worker.stop()
        raise
    return worker


def client(broker_url: str) -> Celery:
    """A producer that sends tasks by name (no Django in this process)."""
    app = Celery(
        "pgrp-celery-client", broker=broker_url, backend=broker_url, fixups=[], set_as_current=False
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    return app


def send(app: Celery, queue: str, name: str, *args: Any, **options: Any) -> AsyncResult:
    return app.send_task(f"celeryjobs.tasks.{name}", args=list(args), queue=queue, **options)


def session_count(admin: psycopg.Connection[Any], app_name: str) -> int:
    """Sessions of ``app_name`` on the admin connection's database."""
    return len(pgstat.sessions(admin, app_name.removeprefix("pgrp-")))


@contextmanager
def peak_sampler(dsn: str, app_name: str, interval: float = 0.01) -> Iterator[dict[str, int]]:
    """Samples the server's session count for ``app_name``; yields {"peak": n}."""
    found = {"peak": 0}
    stop = threading.Event()

    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            while not stop.is_set():
                found["peak"] = max(found["peak"], session_count(admin, app_name))
                stop.wait(interval)

    thread = threading.Thread(target=run, name="pgrp-peak-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(10)


@dataclasses.dataclass
class LoadResult:
    tasks: int
    ok: int
    errors: int
    pool_timeouts: int
    seconds: float
    backend_pids: set[int]
    peak_connections: int


def run_load(
    app: Celery, config: WorkerConfig, *, tasks: int, work_ms: int, timeout: float = 180
) -> LoadResult:
    """``tasks`` load tasks at once to ``config``'s worker; waits for all of them."""
    with peak_sampler(config.dsn, config.app_name) as peak:
        results = ResultSet(
            [send(app, config.queue, "load", work_ms) for _ in range(tasks)], app=app
        )
        values = results.get(timeout=timeout, propagate=False)
    ok = [v for v in values if isinstance(v, dict) and v.get("ok")]
    timeouts = [v for v in values if isinstance(v, dict) and v.get("pool_timeout")]
    finished = [v for v in values if isinstance(v, dict)]
    seconds = (
        max(v["end"] for v in finished) - min(v["start"] for v in finished) if finished else 0.0
    )
    return LoadResult(
        tasks=tasks,
        ok=len(ok),
        errors=tasks - len(ok),
        pool_timeouts=len(timeouts),
        seconds=seconds,
        backend_pids={pid for v in ok for pid in v["pids"]},
        peak_connections=peak["peak"],
    )
