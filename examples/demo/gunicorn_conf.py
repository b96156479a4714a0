"""gunicorn settings of the demo (``-c python:examples.demo.gunicorn_conf``).

With ``DEMO_POOL_STATS`` set to a file, each worker appends the pool's own
statistics to it ten times a second: how many connections are lent out to
threads and how many threads wait for one. The server's view
(``pg_stat_activity``) cannot tell these apart: a connection a thread holds
while it sleeps is just as ``idle`` there as one resting in the pool.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

worker_class = "gthread"
workers = 1
keepalive = 30
graceful_timeout = 10
loglevel = "warning"


def post_worker_init(worker: Any) -> None:
    path = os.environ.get("DEMO_POOL_STATS")
    if path:
        threading.Thread(
            target=_sample_pool, args=(path,), name="demo-pool-stats", daemon=True
        ).start()


def _stats() -> dict[str, int] | None:
    from django.db import connections

    from django_pg_real_pool import _registry

    # This engine's adapter counts connections parked for the next borrow as
    # available (psycopg_pool sees them lent out).
    entry = _registry.get("default")
    if entry is not None:
        return dict(entry.adapter.stats())
    # Django's own engine: its class-level dict, not the `pool` property,
    # which would create the pool.
    pool = getattr(type(connections["default"]), "_connection_pools", {}).get("default")
    return dict(pool.get_stats()) if pool is not None else None


def _sample_pool(path: str) -> None:
    with open(path, "a") as out:
        while True:
            stats = _stats()
            if stats is not None:
                lent = stats.get("pool_size", 0) - stats.get("pool_available", 0)
                out.write(f"{time.monotonic():.3f} {lent} {stats.get('requests_waiting', 0)}\n")
                out.flush()
            time.sleep(0.1)
