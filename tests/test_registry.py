"""One registry of pools for both engines (``_registry.py``): every way of
closing a pool closes it the same way.

The pools here belong to wrappers outside ``connections`` (think: another
thread's), so the task bracket's ``close_pools()`` reaches them only through
the registry, never through a wrapper's ``close_pool()``.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import psycopg
import pytest

from django_pg_real_pool import _bracket
from tests.support.pgstat import sessions, wait_until
from tests.support.pgstat import wrapper_backend_pid as pid_of
from tests.support.wrappers import make_wrapper

POOLS = {
    "django_pg_real_pool": {"OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}}},
    "django_pg_real_pool.dj_db_conn_pool": {
        "POOL_OPTIONS": {"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    },
}
IDS = ["native", "dj_db_conn_pool"]


def _alias(engine: str, what: str) -> str:
    return f"registry-{what}-{engine.rsplit('.', 1)[-1]}"


def _wrapper(engine: str, alias: str) -> Any:
    """A wrapper of its own pool, named on the server (``sessions(admin, alias)``)."""
    settings: dict[str, Any] = {**POOLS[engine]}
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "application_name": f"pgrp-{alias}"}
    return make_wrapper(engine, alias, **settings)


@pytest.mark.parametrize("engine", list(POOLS), ids=IDS)
def test_close_pools_ends_the_sessions_of_parked_connections(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    """A connection parked in the supply is lent out as far as the pool knows:
    closing the pool alone leaves it open, its session on the server, until
    the supply's sweeper happens to send it back (a worker shutting down right
    after close_pools() ends it with a broken connection instead)."""
    alias = _alias(engine, "parked")
    wrapper = _wrapper(engine, alias)
    try:
        wrapper.ensure_connection()
        supply = wrapper._lease_supply
        raw = supply.adapter.raw(wrapper.connection)
        pid = raw.info.backend_pid
        wrapper.close()
        assert supply.stats()["pool_parked"] == 1
        assert pid in {s["pid"] for s in sessions(admin, alias)}
        _bracket.close_pools()
        # At once, not at the sweeper's next round (PARK_MAX).
        assert raw.closed
        assert wait_until(lambda: not sessions(admin, alias), timeout=10), sessions(admin, alias)
        # The alias gets a new pool at its next borrow.
        assert pid_of(wrapper) != pid
    finally:
        wrapper.close()
        wrapper.close_pool()


@pytest.mark.parametrize("engine", list(POOLS), ids=IDS)
def test_close_pools_lets_the_wrapper_that_created_a_pool_go(engine: str) -> None:
    """The native pool's configure callback holds the wrapper that created the
    pool: a pool closed without cutting it keeps that wrapper alive."""
    alias = _alias(engine, "creator")
    creator = _wrapper(engine, alias)
    pid_of(creator)
    creator.close()
    _bracket.close_pools()
    gone = weakref.ref(creator)
    del creator
    # Django's own wrappers are reference cycles before Django 6.0.
    gc.collect()
    assert gone() is None


def test_dj_close_pool_disposes_a_pool_no_borrow_paired_yet(
    admin: psycopg.Connection[Any],
) -> None:
    """django-db-connection-pool makes a pool at its own first checkout; a
    close_pool() before any borrow of this engine still ends its sessions."""
    from dj_db_conn_pool.core import pool_container

    engine = "django_pg_real_pool.dj_db_conn_pool"
    alias = _alias(engine, "unpaired")
    wrapper = _wrapper(engine, alias)
    try:
        # Its own factory (as its test-database set-up checks out connections).
        wrapper.get_new_connection(wrapper.get_connection_params()).close()
        assert pool_container.has(alias)
        assert len(sessions(admin, alias)) == 1
        wrapper.close_pool()
        assert not pool_container.has(alias)
        assert wait_until(lambda: not sessions(admin, alias), timeout=10), sessions(admin, alias)
    finally:
        wrapper.close()
        wrapper.close_pool()
