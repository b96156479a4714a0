"""Start the ASGI project under a real uvicorn, on a scratch database.

Used by the e2e tests (``tests/``); nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.support.pgserver import DSN_ENV, free_port
from tests.support.processes import ManagedProcess

PROJECT_DIR = Path(__file__).resolve().parent
APP_NAME = "pgrp-asgi"
POOL_SIZE = 4
ROWS = 300


@dataclasses.dataclass
class AsgiServer:
    url: str
    dsn: str
    process: ManagedProcess


@contextlib.contextmanager
def serve(server_dsn: str, name: str = "pgrp_asgi_e2e") -> Iterator[AsgiServer]:
    """A migrated scratch database with ``ROWS`` rows and uvicorn serving it."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    env = {DSN_ENV: dsn, "ASGI_APP_NAME": APP_NAME, "ASGI_POOL_MAX_SIZE": str(POOL_SIZE)}
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            check=True,
            timeout=180,
            capture_output=True,
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO asgi_app_row (name, value) "
                "SELECT 'row-' || lpad(i::text, 4, '0'), i FROM generate_series(1, %s) i",
                [ROWS],
            )
        port = free_port()
        process = ManagedProcess(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "asgi_project.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--no-access-log",
            ],
            env=env,
            cwd=PROJECT_DIR,
            name="uvicorn",
        ).start()
        try:
            process.wait_for_output(r"Uvicorn running on", timeout=60)
            yield AsgiServer(f"http://127.0.0.1:{port}", dsn, process)
        finally:
            process.stop()
    finally:
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
