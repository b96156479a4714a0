"""The small interface the lease needs from a pool, and its psycopg_pool form.

The lease (``_lease.py``) never knows which pool sits underneath: it borrows
and returns through a :class:`PoolAdapter`. Each physical connection carries
a :class:`ConnState` the lease uses to configure it once, to decide whether
it needs a health check, and to remember that it must be reset.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from . import _failover, _fork
from .errors import PoolExhausted

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


#: The connection keyword that carries a credentials source (``_credentials.py``).
CREDENTIALS = "pgrp_credentials"


class PoolGone(Exception):
    """The alias's pool was closed (``close_pool()``); borrow from the new one."""


class WaitedInVain(Exception):
    """A pool's ``getconn()`` timed out (the supply words the error: see
    ``PoolAdapter.exhausted``)."""


class _SelectPoller:
    """``select.poll()``'s zero-timeout check through ``select.select()``, for
    where ``select.poll`` is missing: Windows, and eventlet's monkey-patching,
    which removes it (its green ``select()`` answers a zero timeout right)."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def poll(self, timeout: int = 0) -> list[int]:
        try:
            readable, _, _ = select.select([self._fd], [], [], timeout)
        except (OSError, ValueError):
            # A closed descriptor: as poll()'s POLLNVAL, a reason to look closer.
            return [self._fd]
        return readable


def _poller(fd: int) -> Any:
    """A ``poll`` object watching ``fd`` for input (see ``ConnState.poller``)."""
    poll = getattr(select, "poll", None)
    if poll is None:
        return _SelectPoller(fd)
    poller = poll()
    poller.register(fd, select.POLLIN)
    return poller


class ConnState:
    """What the engine remembers about one physical connection."""

    __slots__ = (
        "announced",
        "lent_at",
        "poller",
        "pooler",
        "replayed",
        "returned_at",
        "setup_gen",
        "writer",
    )

    def __init__(self, fd: int, pgconn: Any = None) -> None:
        #: A ``poll`` object on the connection's socket. An idle, clean
        #: connection receives nothing: readable means a termination notice
        #: (``pg_terminate_backend``, a server shutdown), an EOF or a stray
        #: notification, all reasons for a round trip before reuse. A zero-timeout
        #: ``poll()`` on an object kept per connection is cheaper than
        #: ``select()``, which rebuilds its descriptor sets; a closed descriptor
        #: reports ``POLLNVAL``, readable too.
        self.poller = _poller(fd)
        #: ``_setup.generation`` when time zone, role and adapters were applied
        #: (0: never, or undone by ``DISCARD ALL``; see ``_setup.py``).
        self.setup_gen = 0
        #: ``connection_created`` sent for this physical connection.
        self.announced = False
        #: ``monotonic()`` when it was last released (parked or given back).
        self.returned_at = monotonic()
        #: ``monotonic()`` when the pool last lent it (see ``_strays.PARK_MAX``).
        self.lent_at = self.returned_at
        #: A transaction-mode pooler in front: None until asked (``_pooler.py``).
        self.pooler: bool | None = None
        #: Opened on a writer: turning read-only later is a failover (``_failover.py``).
        self.writer = pgconn is not None and not _failover.is_read_only(pgconn)
        #: The session context applied to it (``_replay.py``); None: the server's defaults.
        self.replayed: tuple[tuple[str, str], ...] | None = None


class PooledConnection(psycopg.Connection[Any]):
    """A psycopg connection that carries its :class:`ConnState`.

    psycopg connections have ``__slots__``; a subclass slot is the cheapest place
    for per-connection bookkeeping (no dict lookup on the hot path).
    """

    __slots__ = ("pgrp_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pgrp_state = ConnState(self.pgconn.socket, self.pgconn)
        _fork.track_connection(self)

    @classmethod
    def connect(  # type: ignore[override]
        cls, conninfo: str = "", **kwargs: Any
    ) -> PooledConnection:
        """psycopg's ``connect()``; ``kwargs[CREDENTIALS]``, if given, is called
        for fresh credentials first (``_credentials.py``). Here, inside the
        connection attempt, a failure counts as one for the pool."""
        fresh = kwargs.pop(CREDENTIALS, None)
        if fresh is not None:
            kwargs.update(fresh())
        return super().connect(conninfo, **kwargs)


class PoolAdapter(Protocol):
    """How a :class:`~django_pg_real_pool._supply.Supply` talks to a pool.
    ``conn`` is what Django holds as ``wrapper.connection``; ``raw`` is the
    psycopg connection beneath it."""

    alias: str
    #: ``raw(conn)`` is ``conn`` itself (lets the hot path skip the call).
    raw_is_conn: bool

    @property
    def pool(self) -> Any:
        """The pool itself."""

    def getconn(self, timeout: float | None = None) -> Any:
        """Borrow a connection, waiting at most ``timeout`` (default: the
        pool's); raises ``WaitedInVain``, or ``PoolGone`` once closed."""

    def putconn(self, conn: Any) -> None:
        """Give ``conn`` back; a closed one is dropped and replaced by the pool."""

    def limits(self) -> tuple[int | None, int]:
        """The most connections the pool lends at once (None: no limit), and
        the most borrowers it lets wait (0: no limit)."""

    @property
    def timeout(self) -> float:
        """The pool's timeout (seconds): the longest a borrow waits."""

    def exhausted(self, stats: dict[str, int], lent: int) -> PoolExhausted:
        """The error for a borrow that waited ``timeout`` in vain (``stats``:
        the supply's, ``lent``: connections it has out)."""

    def lendable(self) -> bool:
        """The pool has a connection resting, or room to open one (read from
        the pool itself: the supply's own count is only a fast estimate)."""

    def raw(self, conn: Any) -> PooledConnection:
        """The psycopg connection behind ``conn``."""

    def describe(self) -> str:
        """Size and timeout, for error messages."""

    def exhausted_hint(self) -> str:
        """Which settings to change when the pool runs dry."""

    def stats(self) -> dict[str, int]:
        """The pool's own counters (sizes, waits, errors)."""

    def close(self, give_back: Callable[[], None]) -> None:
        """Close the pool and every idle connection in it; ``give_back()``
        returns the parked ones first, once no new borrow reaches the pool."""

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when they come back."""


class Configure(Protocol):
    """A pool's callback that reaches back to a wrapper (see ``_setup.PoolConfigure``)."""

    def detach(self) -> None:
        """Let go of the wrapper: the pool is closed."""


def ping(raw: psycopg.Connection[Any]) -> None:
    """One round trip; raises if the connection does not work."""
    raw.execute("")


def ping_fails(raw: psycopg.Connection[Any]) -> bool:
    """One round trip on a suspect connection: True if it does not work."""
    try:
        ping(raw)
    except psycopg.Error:
        return True
    return False


class NativePool:
    """Adapter over the ``psycopg_pool.ConnectionPool`` Django 5.1+ creates."""

    raw_is_conn = True

    def __init__(self, pool: ConnectionPool[Any], alias: str) -> None:
        self._pool = pool
        self.alias = alias

    @property
    def pool(self) -> ConnectionPool[Any]:
        return self._pool

    @property
    def timeout(self) -> float:
        return self._pool.timeout

    def limits(self) -> tuple[int | None, int]:
        return self._pool.max_size, self._pool.max_waiting

    def getconn(self, timeout: float | None = None) -> Any:
        try:
            return self._pool.getconn(timeout)
        except PoolTimeout as exc:
            raise WaitedInVain from exc
        except PoolClosed as exc:
            raise PoolGone from exc
        except BaseException as exc:
            if not isinstance(exc, Exception):
                _withdraw_interrupted_wait(self._pool, exc)
            raise

    def putconn(self, conn: Any) -> None:
        self._pool.putconn(conn)

    def drain(self) -> None:
        # Lent connections (parked ones too) are closed as they come back.
        self._pool.drain()

    def lendable(self) -> bool:
        stats = self._pool.get_stats()
        return bool(stats["pool_available"] or stats["pool_size"] < stats["pool_max"])

    def exhausted(self, stats: dict[str, int], lent: int) -> PoolExhausted:
        failed = stats.get("connections_errors", 0)
        # Every attempt failed, or fewer connections are out than the pool may
        # lend while attempts fail: the pool is short of connections it cannot
        # open (a server down, credentials refused), not of free ones.
        if failed and (failed >= stats.get("connections_num", 0) or lent < self._pool.max_size):
            return PoolExhausted(
                f"database alias {self.alias!r}: the pool could not open any connection "
                f"within its timeout ({self.describe()}; {failed} attempts failed, the "
                "'psycopg.pool' logger has the errors). Check HOST/PORT/credentials and "
                "that the server is up."
            )
        return PoolExhausted(
            f"database alias {self.alias!r}: no pooled connection became free within "
            f"the pool timeout ({self.describe()}; "
            f"{stats['requests_waiting']} other requests waiting"
            + (f", {failed} connection attempts failed" if failed else "")
            + f"). To fix: {self.exhausted_hint()}."
        )

    def raw(self, conn: Any) -> PooledConnection:
        return conn  # type: ignore[no-any-return]

    def describe(self) -> str:
        return (
            f"min_size={self._pool.min_size}, max_size={self._pool.max_size}, "
            f"timeout={self._pool.timeout:g}s"
        )

    def exhausted_hint(self) -> str:
        return (
            f"raise DATABASES[{self.alias!r}]['OPTIONS']['pool']['max_size'] (or 'timeout'), "
            "or find the code that holds connections: a long atomic() block, a pinned() "
            "block, an unclosed cursor (enable OPTIONS['real_pool']['leak_threshold'])"
        )

    def stats(self) -> dict[str, int]:
        return self._pool.get_stats()

    def close(self, give_back: Callable[[], None]) -> None:
        give_back()
        self._pool.close()


def _withdraw_interrupted_wait(pool: ConnectionPool[Any], exc: BaseException) -> None:
    """Withdraw the waiting place of a ``getconn()`` that ``exc`` interrupted.

    psycopg_pool (3.3) traps only ``Exception`` while a client waits for a
    connection: an asynchronous ``BaseException`` (dramatiq's
    ``TimeLimitExceeded``/``Shutdown``, delivered when the wait ends) leaves
    the client's place queued, and the next connection returned to the pool is
    handed to it and lost for good; a few of these drain the pool. The place is
    ``_getconn_unchecked``'s ``pos`` (a ``WaitingClient``), found in the
    traceback: it is marked failed so the pool skips it, and a connection
    already handed to it goes back. On another psycopg_pool layout this finds
    nothing and does nothing.
    """
    from psycopg_pool.pool import WaitingClient

    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_getconn_unchecked":
            pos = frame.f_locals.get("pos")
            break
        tb = tb.tb_next
    else:
        return
    if not isinstance(pos, WaitingClient):
        return
    with pos._cond:  # the lock the pool's hand-over (WaitingClient.set) takes
        conn = pos.conn
        pos.conn = None
        if pos.error is None:
            pos.error = exc
    if conn is not None:
        conn._pool = pool
        pool.putconn(conn)
