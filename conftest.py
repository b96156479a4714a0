"""Session set-up for every test: a real PostgreSQL server and Django settings.

The server is ``DJANGO_PG_REAL_POOL_TEST_DSN`` when set, otherwise a throwaway
embedded one started here and stopped at the end. There is no fallback: no
server means the run fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import django
import pytest
from django.conf import settings

from tests.settings import build
from tests.support.pgserver import DSN_ENV, PostgresServer

_server: PostgresServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _server
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        _server = PostgresServer().start()
        dsn = _server.dsn()
        # Worker processes started by the e2e tests find the server here.
        os.environ[DSN_ENV] = dsn
    if not settings.configured:
        settings.configure(**build(dsn))
        django.setup()


@pytest.fixture(scope="session", autouse=True)
def _close_pools_before_test_db_teardown(django_db_setup: None) -> Iterator[None]:
    # Pools keep sessions open on the test database; Django cannot drop a
    # database that has sessions.
    yield
    from django.db import connections

    for alias in connections:
        connections[alias].close()
        connections[alias].close_pool()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
