"""One scratch database and one Redis server for the huey e2e tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.huey import harness
from tests.support.pgserver import DSN_ENV


@pytest.fixture(scope="session")
def hq() -> Iterator[harness.Project]:
    """The integration project's database and Redis (consumers start per module)."""
    with harness.project(os.environ[DSN_ENV], "pgrp_huey_e2e") as project:
        yield project


@pytest.fixture
def admin(hq: harness.Project) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the project's database, to ask the server."""
    with psycopg.connect(hq.dsn, autocommit=True) as conn:
        yield conn
