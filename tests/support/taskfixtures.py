"""The fixtures every task-queue e2e project's ``conftest.py`` declares.

dq, admin = project_fixtures(harness.project, "dq", "pgrp_dramatiq_e2e")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import psycopg
import pytest

from tests.support.pgserver import DSN_ENV
from tests.support.taskprojects import TaskProject


def project_fixtures(
    open_project: Callable[[str, str], AbstractContextManager[TaskProject]],
    name: str,
    database: str,
) -> tuple[Any, Any]:
    """Fixture ``name``: the project's scratch database ``database`` (and its
    Redis server) for the whole session, opened by ``open_project`` on the
    test server; fixture ``admin``: an autocommit connection to that
    database, to ask the server."""

    @pytest.fixture(scope="session", name=name)
    def project() -> Iterator[TaskProject]:
        with open_project(os.environ[DSN_ENV], database) as proj:
            yield proj

    @pytest.fixture(name="admin")
    def admin(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
        proj: TaskProject = request.getfixturevalue(name)
        with psycopg.connect(proj.dsn, autocommit=True) as conn:
            yield conn

    return project, admin
