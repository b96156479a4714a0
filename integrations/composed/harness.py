"""Run a scenario of ``scenarios.py`` in a fresh process on a scratch database.

Used by the tests (``tests/``); nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.support.pgserver import DSN_ENV, PostgresServer, free_port, system_bindir_with
from tests.support.processes import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
APP_NAME = "pgrp-composed"


def postgis_missing() -> str | None:
    """What the PostGIS tests lack on this machine, or None."""
    missing = []
    if system_bindir_with("postgis") is None:
        missing.append("a system PostgreSQL with PostGIS (Debian: postgresql-15-postgis-3)")
    if ctypes.util.find_library("gdal") is None:
        missing.append("GDAL (Debian: libgdal32)")
    if ctypes.util.find_library("geos_c") is None:
        missing.append("GEOS (Debian: libgeos-c1v5)")
    if not missing:
        return None
    return "missing " + ", ".join(missing) + "; install with `make postgis-deps` as root"


@contextlib.contextmanager
def postgis_server() -> Iterator[PostgresServer]:
    """A throwaway server of the system installation that has PostGIS."""
    bindir = system_bindir_with("postgis")
    assert bindir is not None
    with PostgresServer(bindir=bindir) as server:
        yield server


def scratch_database(server_dsn: str, name: str) -> str:
    """A new empty database on the server; its DSN."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(server_dsn, dbname=name)


def composed_env(dsn: str, *, backend: str, pool: str, **extra: str) -> dict[str, str]:
    """The environment ``settings.py`` reads (``extra``: more variables)."""
    return {
        **os.environ,
        **extra,
        DSN_ENV: dsn,
        "COMPOSED_BACKEND": backend,
        "COMPOSED_POOL": pool,
        "COMPOSED_APP_NAME": APP_NAME,
        "DJANGO_SETTINGS_MODULE": "integrations.composed.settings",
    }


@contextlib.contextmanager
def serve_tenants(
    dsn: str, tenants: list[str], *, pool: str, threads: int, env: dict[str, str]
) -> Iterator[str]:
    """The tenant web project on ``dsn`` (migrated, ``tenants`` created by
    the ``tenants_web_setup`` scenario) under gunicorn, one process with
    ``threads`` threads; yields its base URL and stops it at exit."""
    env = {**env, "COMPOSED_TENANTS": ",".join(tenants)}
    run_scenario("tenants_web_setup", dsn, backend="tenants", pool=pool, env=env)
    port = free_port()
    process = ManagedProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class",
            "gthread",
            "--workers",
            "1",
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "integrations.composed.wsgi:application",
        ],
        env=composed_env(dsn, backend="tenants", pool=pool, **env),
        cwd=REPO,
        name="gunicorn-tenants",
    ).start()
    try:
        # The worker's boot line comes after the listening socket is bound.
        process.wait_for_output(r"Booting worker with pid", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)


def run_scenario(
    name: str, dsn: str, *, backend: str, pool: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run scenario ``name`` on ``dsn`` with the composed engine; its report."""
    result = subprocess.run(
        [sys.executable, "-m", "integrations.composed.scenarios", name],
        cwd=REPO,
        check=False,  # the report or the output explains a failure
        env=composed_env(dsn, backend=backend, pool=pool, **(env or {})),
        capture_output=True,
        text=True,
        timeout=240,
    )
    for line in result.stdout.splitlines():
        if line.startswith("REPORT "):
            report: dict[str, Any] = json.loads(line[len("REPORT ") :])
            return report
    raise AssertionError(
        f"scenario {name} ({backend}, {pool}) failed with exit code {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
