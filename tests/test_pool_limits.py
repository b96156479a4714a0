"""A drained pool fails within its timeout with an error that says what to do."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction

from django_pg_real_pool import PoolExhausted
from tests.support.wrappers import HoldConnection, make_wrapper


@pytest.mark.parametrize(
    ("engine", "pool_settings", "names"),
    [
        (
            "django_pg_real_pool",
            {"OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 0.5}}},
            ("max_size=1", "timeout=0.5s", "['OPTIONS']['pool']['max_size']"),
        ),
        (
            "django_pg_real_pool.dj_db_conn_pool",
            {"POOL_OPTIONS": {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.5}},
            ("pool_size=1", "timeout=0.5s", "['POOL_OPTIONS']['POOL_SIZE']"),
        ),
    ],
    ids=["native", "dj_db_conn_pool"],
)
def test_exhausted_pool_raises_clear_operational_error(
    engine: str, pool_settings: dict[str, Any], names: tuple[str, ...]
) -> None:
    alias = f"tiny-{engine.rsplit('.', 1)[-1]}"
    holder = make_wrapper(engine, alias, **pool_settings)
    waiter = make_wrapper(engine, alias, **pool_settings)
    try:
        with HoldConnection(holder):
            t0 = time.monotonic()
            with pytest.raises(OperationalError) as info:
                waiter.ensure_connection()
            waited = time.monotonic() - t0
        assert isinstance(info.value, PoolExhausted)
        message = str(info.value)
        assert repr(alias) in message
        for name in names:
            assert name in message
        assert 0.4 <= waited < 5
        # Once the holder lets go, the waiter gets the connection.
        waiter.ensure_connection()
        assert waiter.connection is not None
    finally:
        waiter.close()
        holder.close()
        holder.close_pool()


def test_waiter_gets_connection_released_by_another_thread(engine: str) -> None:
    # Pool max_size=4: 4 holders, a 5th thread waits, then proceeds when one lets go.
    ready = threading.Barrier(5)
    release = threading.Event()
    got: list[int] = []

    def hold() -> None:
        with transaction.atomic(using=engine):
            with connections[engine].cursor() as cursor:
                cursor.execute("SELECT 1")
            ready.wait()
            release.wait(30)
        connections[engine].close()

    holders = [threading.Thread(target=hold) for _ in range(4)]
    for t in holders:
        t.start()
    ready.wait()

    def wait_then_query() -> None:
        with connections[engine].cursor() as cursor:
            cursor.execute("SELECT 7")
            got.append(cursor.fetchone()[0])
        connections[engine].close()

    waiter = threading.Thread(target=wait_then_query)
    waiter.start()
    release.set()
    waiter.join(30)
    for t in holders:
        t.join(30)
    assert got == [7]
