"""The ASGI project under a real uvicorn, for the e2e tests of this module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from integrations.asgi.harness import AsgiServer, serve
from tests.support.pgserver import DSN_ENV


@pytest.fixture(scope="module")
def asgi_server() -> Iterator[AsgiServer]:
    with serve(os.environ[DSN_ENV]) as server:
        yield server
