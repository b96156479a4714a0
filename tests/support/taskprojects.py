"""What the e2e projects of the task runners (huey, RQ, ...) share.

A scratch database migrated by a project's ``manage.py``, the JSON-lines leak
log its workers write, the peak of its sessions on the server. Each
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.support.pgserver import DSN_ENV


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
