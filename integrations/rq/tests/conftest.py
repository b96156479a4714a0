"""One scratch database and one Redis server for the rq e2e tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.rq import harness
from tests.support.pgserver import DSN_ENV


@pytest.fixture(scope="session")
def rqp() -> Iterator[harness.Project]:
    """The integration project's database and Redis (workers start per module)."""
    with harness.project(os.environ[DSN_ENV], "pgrp_rq_e2e") as project:
        yield project


@pytest.fixture
def admin(rqp: harness.Project) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the project's database, to ask the server."""
    with psycopg.connect(rqp.dsn, autocommit=True) as conn:
        yield conn
