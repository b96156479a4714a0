"""Drive the Django Tasks project: scratch database, a real ``db_worker``.

Shared by the end-to-end tests and ``benchmarks/workers_djtasks.py``. The
worker is ``django-tasks-db``'s ``manage.py db_worker`` (one thread: it
offers no thread concurrency); this side enqueues through the project's
``enqueue_tasks`` command and reads the results the worker stored in the
database (``django_tasks_database_dbtaskresult``).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.support import taskprojects
from tests.support.pgstat import wait_until
from tests.support.processes import ManagedProcess
from tests.support.redisserver import RedisServer

PROJECT_DIR = Path(__file__).resolve().parent
#: ``application_name`` of the worker's sessions (``pgstat.sessions(admin, "tasks")``).
APP_NAME = "pgrp-tasks"
READY = r"Starting worker worker_id="
FINAL = ("SUCCESSFUL", "FAILED")


class Outcome:
    """A task's stored state: status, return value, exception class path."""

    def __init__(self, status: str, value: Any, error: str) -> None:
        self.status = status
        self.value = value
        self.error = error or None

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESSFUL"

    def __repr__(self) -> str:
        return f"Outcome({self.status}, value={self.value!r}, error={self.error})"


class Project(taskprojects.TaskProject):
    """One database; workers started on demand."""

    project_dir = PROJECT_DIR
    prefix = "TK"
    settings_module = "tk_project.settings"
    app_name = APP_NAME

    def __init__(self, dsn: str, redis: RedisServer | None = None) -> None:
        super().__init__(dsn, redis)
        self.admin = psycopg.connect(dsn, autocommit=True)

    def worker(
        self, *, engine: str = "real", max_size: int = 4, leak_log: Path | None = None, **env: str
    ) -> ManagedProcess:
        """Start ``db_worker`` and wait until it polls."""
        return taskprojects.start_worker(
            [sys.executable, "manage.py", "db_worker", "--interval", "0.02", "--no-startup-delay"],
            env=self.env(engine=engine, max_size=max_size, leak_log=leak_log, **env),
            cwd=PROJECT_DIR,
            name=f"db-worker-{engine}",
            ready=READY,
        )

    def enqueue(self, *calls: tuple[str, list[Any]]) -> list[str]:
        """Enqueue ``tk_app.tasks.<name>(*args)`` for each call; their ids."""
        done = self.manage(
            "enqueue_tasks",
            json.dumps([list(c) for c in calls]),
            check=True,
            app_name="pgrp-tasks-enqueue",
        )
        ids: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
        return ids

    def states(self, ids: list[str]) -> dict[str, Outcome]:
        rows = self.admin.execute(
            "SELECT id::text, status, return_value, exception_class_path "
            "FROM django_tasks_database_dbtaskresult WHERE id::text = ANY(%s)",
            [ids],
        ).fetchall()
        return {row[0]: Outcome(row[1], row[2], row[3]) for row in rows}

    def outcomes(
        self, ids: list[str], *, timeout: float = 60.0, until: tuple[str, ...] = FINAL
    ) -> list[Outcome]:
        """Wait until every task reached one of ``until``; their outcomes, in order."""
        states: dict[str, Outcome] = {}

        def finished() -> bool:
            states.update(self.states(ids))
            return all(i in states and states[i].status in until for i in ids)

        if not wait_until(finished, timeout=timeout, interval=0.02):
            raise TimeoutError(f"tasks not finished in {timeout}s: {[states.get(i) for i in ids]}")
        return [states[i] for i in ids]

    def run_load(self, tasks: int, work_ms: int) -> list[Outcome]:
        return self.outcomes(self.enqueue(*[("load", [work_ms])] * tasks), timeout=300)

    def flush(self) -> None:
        self.admin.execute("DELETE FROM django_tasks_database_dbtaskresult")

    def close(self) -> None:
        self.admin.close()


#: A scratch database for one test module or run.
project = Project.open
#: Figures of a load run on the running worker(s) (``workers``: how many).
measure_load = taskprojects.measure_load


def stop_gracefully(worker: ManagedProcess, timeout: float = 60.0) -> int:
    """SIGTERM: db_worker finishes its current task, then exits."""
    worker.signal(signal.SIGTERM)
    return worker.wait(timeout)
