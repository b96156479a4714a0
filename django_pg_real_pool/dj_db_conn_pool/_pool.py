"""How the dj engine talks to django-db-connection-pool's SQLAlchemy
``QueuePool``: the :class:`~django_pg_real_pool._pools.PoolAdapter`, the
connection factory, the proxy PostGIS must see through, and the container a
fork child empties."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dj_db_conn_pool.core import pool_container
from sqlalchemy.exc import TimeoutError as QueuePoolTimeout

from .. import _fork
from .._pools import PooledConnection, PoolGone, WaitedInVain
from ..errors import PoolExhausted


class QueuePoolAdapter:
    """Borrows ``_ConnectionFairy`` proxies; Django holds the proxy, as with the
    plain django-db-connection-pool engine."""

    raw_is_conn = False

    def __init__(self, pool: Any, alias: str) -> None:
        self._pool = pool
        self.alias = alias

    @property
    def pool(self) -> Any:
        return self._pool

    @property
    def timeout(self) -> float:
        return float(self._pool._timeout)

    def limits(self) -> tuple[int | None, int]:
        # QueuePool has no max_waiting.
        overflow = self._pool._max_overflow
        return (self._pool.size() + overflow if overflow >= 0 else None), 0

    def getconn(self, timeout: float | None = None) -> Any:
        # QueuePool takes no per-call timeout: a borrow sent here from the
        # supply's queue (see _supply.py) may wait the pool's timeout once more.
        # close_pool() or django-db-connection-pool's own dispose-on-test-teardown
        # replaced the alias's pool: borrow from the new one.
        pool: Any = self._pool
        current: Any = dict.get(pool_container, self.alias)
        if current is None or current is not pool:
            raise PoolGone
        try:
            fairy = pool.connect()
        except QueuePoolTimeout as exc:
            raise WaitedInVain from exc
        # Django reads connection.info as psycopg's ConnectionInfo (server
        # version, parameter status), as django-db-connection-pool arranges.
        fairy.info = fairy.driver_connection.info
        return fairy

    def putconn(self, conn: Any) -> None:
        if (
            conn.driver_connection.closed
            # Disposed since (close_pool(), django-db-connection-pool's test
            # database teardown): nobody would close a connection resting in it.
            or dict.get(pool_container, self.alias) is not self._pool
        ):
            # Closes the connection and frees the slot; the pool opens a new
            # connection when needed.
            conn.invalidate()
        else:
            conn.close()

    def drain(self) -> None:
        # Every connection opened before now is replaced at its next checkout
        # (SQLAlchemy's pool-wide invalidation, as after a disconnect error).
        self._pool._invalidate_time = time.time()

    def lendable(self) -> bool:
        pool = self._pool
        overflow = pool._max_overflow
        return bool(pool.checkedin() or overflow < 0 or pool.overflow() < overflow)

    def exhausted(self, stats: dict[str, int], lent: int) -> PoolExhausted:
        return PoolExhausted(
            f"database alias {self.alias!r}: no pooled connection became free within "
            f"the pool timeout ({self.describe()}). To fix: {self.exhausted_hint()}."
        )

    def raw(self, conn: Any) -> PooledConnection:
        return conn.driver_connection  # type: ignore[no-any-return]

    def describe(self) -> str:
        pool = self._pool
        return (
            f"pool_size={pool.size()}, max_overflow={pool._max_overflow}, "
            f"timeout={pool._timeout:g}s"
        )

    def exhausted_hint(self) -> str:
        return (
            f"raise DATABASES[{self.alias!r}]['POOL_OPTIONS']['POOL_SIZE'] / 'MAX_OVERFLOW' "
            "(or 'TIMEOUT'), or find the code that holds connections: a long atomic() "
            "block, a pinned() block, an unclosed cursor (enable "
            "OPTIONS['real_pool']['leak_threshold'])"
        )

    def stats(self) -> dict[str, int]:
        pool = self._pool
        return {
            "pool_size": pool.size(),
            "pool_available": pool.checkedin(),
            "pool_checked_out": pool.checkedout(),
            "pool_overflow": pool.overflow(),
        }

    def close(self, give_back: Callable[[], None]) -> None:
        # Out of the container first: a borrower racing with this finds the
        # pool gone (PoolGone) and a parked connection given back is closed
        # (putconn), not checked in. Given back before dispose(), which a
        # connection checked in afterwards would outlive.
        with pool_container.lock:
            current = pool_container.pop(self.alias, None)
        give_back()
        self._pool.dispose()
        if current is not None and current is not self._pool:
            # django-db-connection-pool replaced the pool since this adapter
            # was made, and nobody borrowed from the new one yet.
            current.dispose()


class Connect:
    """A QueuePool's connection factory: physical connections carry our state
    and rest in autocommit, as with the native engine.

    It holds the connection parameters, not a wrapper. django-db-connection-pool's
    factory is a lambda over the wrapper that created the pool, so the pool kept
    that wrapper alive; and every wrapper's finalizer keeps the adapter of its
    last borrow, hence the pool: the wrapper that created a pool could never be
    freed, nor that pool after ``close_pool()``.
    """

    __slots__ = ("fresh", "params")

    def __init__(self, params: dict[str, Any], fresh: Callable[[], dict[str, Any]] | None) -> None:
        self.params = {**params, "autocommit": True}
        # OPTIONS["real_pool"]["credentials"], read at each connection (_credentials.py).
        self.fresh = fresh

    def __call__(self) -> PooledConnection:
        if self.fresh is None:
            return PooledConnection.connect(**self.params)
        return PooledConnection.connect(**{**self.params, **self.fresh()})


class UnwrapForPostGIS:
    """PostGIS on SQLAlchemy's pool: Django passes PostGIS ``self.connection``
    (``prepare_database()``, the ``CreateExtension`` operation), here
    SQLAlchemy's proxy, which psycopg's ``TypeInfo.fetch`` refuses; PostGIS
    gets the psycopg connection inside it."""

    def register_geometry_adapters(self, pg_connection: Any, clear_caches: bool = False) -> None:
        raw = getattr(pg_connection, "driver_connection", pg_connection)
        super().register_geometry_adapters(raw, clear_caches)  # type: ignore[misc]


def _forget_pools_after_fork() -> list[Any]:
    # django-db-connection-pool's own registry (the pools are also in ours).
    inherited: list[Any] = list(pool_container.values())
    pool_container.clear()
    return inherited


_fork._child_hooks.append(_forget_pools_after_fork)
