"""Fixtures shared by the core tests."""

from __future__ import annotations

import os
import unittest
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections

from tests.support import pgstat

# tox's engine factor narrows the run to one engine (PGRP_TEST_ENGINES).
_ENGINE_IDS = {"native": "default", "dj_db_conn_pool": "djpool"}
_SELECTED = os.environ.get("PGRP_TEST_ENGINES", "native,dj_db_conn_pool").split(",")
ENGINES = [_ENGINE_IDS[name] for name in _SELECTED]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # TestCase-style wrapping in atomic() would hide the release path: tests
    # here are transactional unless they say otherwise.
    for item in items:
        if getattr(item, "cls", None) is not None and issubclass(item.cls, unittest.TestCase):
            continue  # Django's TestCase classes declare their own databases.
        if "tests" in item.path.parts and item.get_closest_marker("django_db") is None:
            item.add_marker(pytest.mark.django_db(transaction=True, databases="__all__"))


@pytest.fixture(params=ENGINES, ids=list(_SELECTED))
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The alias of one engine, on the test database, outside any transaction."""
    alias: str = request.param
    # Django's test database set-up ends with a bare ensure_connection():
    # start every test from a released wrapper.
    connections[alias].close()
    yield alias
    connections[alias].close()


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    """A separate autocommit connection to the test database, to ask the server."""
    with psycopg.connect(pgstat.admin_dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def figures(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a scenario's figures even when pytest captures output."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    return emit
