"""Session fixtures of the Celery tests: a Redis broker and a migrated database.

The worker processes use the example project's own settings (via the
environment), on a database of their own on the test server, so the
in-process Django of the test session and the workers never share tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from integrations.celery.harness import create_database, drop_database
from integrations.celery.tests.workers import CeleryEnv
from tests.support.pgserver import DSN_ENV
from tests.support.redisserver import RedisServer


@pytest.fixture(scope="session")
def celery_env() -> Iterator[CeleryEnv]:
    server_dsn = os.environ[DSN_ENV]
    name = f"pgrp_celery_{os.getpid()}"
    with RedisServer() as redis_server:
        dsn = create_database(server_dsn, name)
        try:
            yield CeleryEnv(dsn=dsn, broker_url=redis_server.url)
        finally:
            drop_database(server_dsn, name)
