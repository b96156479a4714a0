"""One scratch database for the Django Tasks e2e tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from integrations.djtasks import harness
from tests.support.pgserver import DSN_ENV


@pytest.fixture(scope="session")
def tk() -> Iterator[harness.Project]:
    """The integration project's database (workers start per module)."""
    with harness.project(os.environ[DSN_ENV], "pgrp_djtasks_e2e") as project:
        yield project


@pytest.fixture
def admin(tk: harness.Project) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the project's database, to ask the server."""
    with psycopg.connect(tk.dsn, autocommit=True) as conn:
        yield conn
