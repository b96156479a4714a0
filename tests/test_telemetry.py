"""Telemetry reports what the test did: borrows, held connections, waits, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections

from django_pg_real_pool import PoolExhausted, _registry, telemetry
from django_pg_real_pool.telemetry import (
    CONNECTION_COUNT,
    CONNECTION_MAX,
    CREATE_TIME,
    ENGINE_PREFIX,
    PENDING_REQUESTS,
    TIMEOUTS,
    USE_TIME,
    WAIT_TIME,
)
from tests.support.pgstat import sessions, wait_until

ACQUIRES = ENGINE_PREFIX + "acquires"
RELEASES = ENGINE_PREFIX + "releases"


def stats(alias: str) -> dict[str, Any]:
    return telemetry.snapshot()[alias]


def query(alias: str, sql: str = "SELECT 1") -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def test_ten_queries_count_ten_borrows_and_returns(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    query(engine)  # the pool exists and is warm
    before = stats(engine)
    for _ in range(10):
        query(engine)
    after = stats(engine)
    assert after[ACQUIRES] - before[ACQUIRES] == 10
    assert after[RELEASES] - before[RELEASES] == 10
    assert after[WAIT_TIME]["count"] - before[WAIT_TIME]["count"] == 10
    assert after[USE_TIME]["count"] - before[USE_TIME]["count"] == 10
    assert after[USE_TIME]["sum"] > before[USE_TIME]["sum"]
    # Everything is back: the pool's sessions on the server are all idle in it.
    count = after[CONNECTION_COUNT]
    assert count["used"] == 0
    assert count["idle"] == len(sessions(admin, engine))
    assert after[CONNECTION_MAX] == 4


def test_held_connection_counts_as_used(engine: str, admin: psycopg.Connection[Any]) -> None:
    query(engine)
    idle_before = stats(engine)[CONNECTION_COUNT]["idle"]
    cursor = connections[engine].cursor()
    try:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        held = stats(engine)[CONNECTION_COUNT]
        assert held == {"used": 1, "idle": idle_before - 1}
        # The server sees that very session, outside any transaction.
        session = next(s for s in sessions(admin, engine) if s["pid"] == pid)
        assert session["state"] == "idle" and not session["has_xid"]
    finally:
        cursor.close()
    assert stats(engine)[CONNECTION_COUNT] == {"used": 0, "idle": idle_before}


def test_use_time_covers_the_time_held(engine: str) -> None:
    query(engine)
    before = stats(engine)[USE_TIME]
    query(engine, "SELECT pg_sleep(0.2)")
    after = stats(engine)[USE_TIME]
    assert after["count"] - before["count"] == 1
    assert after["sum"] - before["sum"] >= 0.2


@pytest.fixture
def hold_pool() -> Iterator[Callable[[str, int], None]]:
    """Start threads that each hold one connection of an alias until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def hold(alias: str, ready: threading.Barrier) -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                ready.wait(30)
                stop.wait(30)
        finally:
            connections[alias].close()

    def start(alias: str, n: int) -> None:
        ready = threading.Barrier(n + 1)
        for _ in range(n):
            thread = threading.Thread(target=hold, args=(alias, ready))
            thread.start()
            threads.append(thread)
        ready.wait(30)

    def release_all() -> None:
        stop.set()
        for thread in threads:
            thread.join(30)

    start.release_all = release_all  # type: ignore[attr-defined]
    yield start
    release_all()


def test_wait_time_grows_while_the_pool_is_exhausted(
    engine: str, hold_pool: Callable[[str, int], None]
) -> None:
    query(engine)
    before = stats(engine)[WAIT_TIME]
    hold_pool(engine, 4)  # the whole pool (max 4)
    assert stats(engine)[CONNECTION_COUNT]["used"] == 4
    waited: list[float] = []

    def borrow() -> None:
        t0 = time.monotonic()
        try:
            query(engine)
        finally:
            waited.append(time.monotonic() - t0)
            connections[engine].close()

    waiter = threading.Thread(target=borrow)
    waiter.start()
    try:
        # Queued in the supply (see _supply.py), on either pool.
        assert wait_until(lambda: stats(engine)[PENDING_REQUESTS] == 1)
        assert len(connections[engine]._lease_supply.queued()) == 1
        queued_at = time.monotonic()  # the waiter is in the queue by now
        # Not waiting for an event: the point is that the waiter waits a
        # known minimum, which its wait time must then include.
        time.sleep(0.1)
    finally:
        released_at = time.monotonic()
        hold_pool.release_all()  # type: ignore[attr-defined]
        waiter.join(30)
    after = stats(engine)
    assert len(waited) == 1
    assert after[PENDING_REQUESTS] == 0
    # 4 holders + 1 waiter borrowed; the waiter waited at least from when it
    # was seen queued to when the holders let go.
    assert after[WAIT_TIME]["count"] - before["count"] == 5
    assert released_at - queued_at >= 0.1
    assert after[WAIT_TIME]["sum"] - before["sum"] >= released_at - queued_at
    assert after[CONNECTION_COUNT]["used"] == 0


def test_timeouts_counted(hold_pool: Callable[[str, int], None]) -> None:
    alias = "default"
    query(alias)
    pool = connections[alias].pool
    before = stats(alias)[TIMEOUTS]
    hold_pool(alias, 4)
    timeout, pool.timeout = pool.timeout, 0.2
    try:
        with pytest.raises(PoolExhausted, match="no pooled connection became free"):
            query(alias)
    finally:
        pool.timeout = timeout
    assert stats(alias)[TIMEOUTS] - before == 1


def test_create_time_counts_new_connections(admin: psycopg.Connection[Any]) -> None:
    alias = "other"
    connections[alias].close_pool()
    # A new pool opens min_size (1) connection; wait for it, or a borrow
    # arriving first would make the pool grow.
    connections[alias].pool.wait(10)
    (pid,) = query(alias, "SELECT pg_backend_pid()")
    query(alias)
    created = stats(alias)[CREATE_TIME]
    assert created["count"] == 1
    assert created["sum"] > 0
    assert query(alias, "SELECT pg_backend_pid()") == (pid,)
    # The server ends the old pool's sessions shortly after they close.
    assert wait_until(lambda: {s["pid"] for s in sessions(admin, alias)} == {pid})


def test_queuepool_reports_what_it_does_not_measure_as_none() -> None:
    query("djpool")
    data = stats("djpool")
    assert data[CREATE_TIME] is None
    # QueuePool counts no waiters; the lane counts those it queues.
    assert data[PENDING_REQUESTS] == 0
    assert data[CONNECTION_MAX] == 4  # POOL_SIZE 4 + MAX_OVERFLOW 0


def test_snapshot_never_creates_a_pool(admin: psycopg.Connection[Any]) -> None:
    connections["other"].close_pool()
    data = stats("other")
    assert _registry.get("other") is None
    assert data[CONNECTION_COUNT] == {"used": 0, "idle": 0}
    assert data[CONNECTION_MAX] is None
    # The closed pool's backends leave pg_stat_activity a moment after their
    # clients hang up; a snapshot that opened a pool would keep one there.
    assert wait_until(lambda: sessions(admin, "other") == [])
    assert _registry.get("other") is None


def test_opentelemetry_instruments_read_the_snapshot(engine: str) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        assert telemetry.enable_opentelemetry(provider) is True
        assert telemetry.enable_opentelemetry(provider) is False
        query(engine)
        cursor = connections[engine].cursor()
        try:
            cursor.execute("SELECT 1")
            points = _otel_points(reader)
            expected = stats(engine)
        finally:
            cursor.close()
    finally:
        provider.shutdown()
    pool = {telemetry.POOL_NAME: engine}
    assert points["db.client.connection.count", (*pool.items(), (telemetry.STATE, "used"))] == 1
    assert points[ACQUIRES, tuple(pool.items())] == expected[ACQUIRES]
    assert points[WAIT_TIME + ".count", tuple(pool.items())] == expected[WAIT_TIME]["count"]
    assert points[CONNECTION_MAX, tuple(pool.items())] == 4


def _otel_points(reader: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    data = reader.get_metrics_data()
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "django_pg_real_pool":
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[metric.name, tuple(point.attributes.items())] = point.value
    return points


def test_prometheus_collector_exports_the_snapshot(engine: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(telemetry.PrometheusCollector())
    query(engine)
    cursor = connections[engine].cursor()
    try:
        cursor.execute("SELECT 1")
        expected = stats(engine)
        used = registry.get_sample_value(
            "db_client_connection_count", {"pool_name": engine, "state": "used"}
        )
        acquires = registry.get_sample_value(
            "django_pg_real_pool_acquires_total", {"pool_name": engine}
        )
        waits = registry.get_sample_value(
            "db_client_connection_wait_time_seconds_count", {"pool_name": engine}
        )
    finally:
        cursor.close()
    assert used == 1
    assert acquires == expected[ACQUIRES]
    assert waits == expected[WAIT_TIME]["count"]
    text = generate_latest(registry).decode()
    assert "db_client_connection_max" in text
    assert "db_client_connection_use_time_seconds_sum" in text


def test_queuepool_timeouts_counted(hold_pool: Any) -> None:
    alias = "djpool"
    query(alias)
    before = telemetry.snapshot()[alias][telemetry.TIMEOUTS]
    hold_pool(alias, 4)
    pool = connections[alias]._lease_supply.adapter.pool
    timeout, pool._timeout = pool._timeout, 0.2
    try:
        with pytest.raises(PoolExhausted):
            query(alias)
    finally:
        pool._timeout = timeout
    assert telemetry.snapshot()[alias][telemetry.TIMEOUTS] - before == 1
