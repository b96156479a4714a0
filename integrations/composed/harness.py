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

from tests.support.pgserver import DSN_ENV, PostgresServer, system_bindir_with

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


def run_scenario(
    name: str, dsn: str, *, backend: str, pool: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run scenario ``name`` on ``dsn`` with the composed engine; its report."""
    env = {
        **os.environ,
        **(env or {}),
        DSN_ENV: dsn,
        "COMPOSED_BACKEND": backend,
        "COMPOSED_POOL": pool,
        "COMPOSED_APP_NAME": APP_NAME,
        "DJANGO_SETTINGS_MODULE": "integrations.composed.settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "integrations.composed.scenarios", name],
        cwd=REPO,
        check=False,  # the report or the output explains a failure
        env=env,
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
