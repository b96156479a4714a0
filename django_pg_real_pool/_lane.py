"""Released connections parked in front of the pool for this process's next borrow.

A borrow and a return through psycopg_pool cost about 11 µs together (a lock
on each side, statistics, logging calls, the expiry check): more than all the
engine's own bookkeeping, paid twice per request. A :class:`Lane` keeps what
is released while nobody waits in a LIFO list; the next borrow of any thread
of the process pops the most recently used connection without a lock.

For the pool, a parked connection is still lent out. These rules keep the
pool's own behaviour intact:

* **Nobody waits while a connection is parked.** A borrower that finds the
  lane empty announces itself in :attr:`Lane.waiting` before it looks again
  and before it queues in the pool. A release with someone announced goes to
  the pool, which hands it to the longest waiter. A release that parked
  looks again afterwards and hands a parked connection over if an
  announcement slipped in between. List operations are atomic, so with
  announce-then-look on one side and park-then-look on the other, no
  interleaving leaves a connection parked while an announced borrower waits.
* **The pool sees every connection at least every** :data:`PARK_MAX`
  **seconds.** A connection lent by the pool longer than that goes back
  through it on release (max_lifetime, ``drain()`` and SQLAlchemy's recycle
  apply there). One parked longer than that goes back too, from the sweeper
  thread, so the pool can shrink and its statistics read right when the
  process falls idle.
* :meth:`Lane.close` (``close_pool()``, a replaced pool) refuses parking for
  good and returns whatever is parked.

The borrowing and releasing themselves are inline in ``_lease.py``: the lane
is only the lists, the slow paths and the sweeper.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from time import monotonic, sleep
from typing import Any

logger = logging.getLogger("django_pg_real_pool")

#: Longest a connection stays out of the pool between two visits, and longest
#: it stays parked (seconds).
PARK_MAX = 1.0

#: A permanent announcement: a closed lane never parks again.
_CLOSED = object()


class Lane:
    """One pool's parked connections (shared by every thread of the process)."""

    __slots__ = ("__weakref__", "_putconn", "_raw", "parked", "waiting")

    #: The sweeper sleeps until a park wakes it (read on every park: a class
    #: attribute, no lock).
    sweeper_idle = False

    def __init__(self, putconn: Callable[[Any], None], raw: Callable[[Any], Any]) -> None:
        #: Released connections, most recent last (lock-free: list operations
        #: are atomic).
        self.parked: list[Any] = []
        #: Borrowers on their way into the pool's queue, and _CLOSED (a set:
        #: adding and discarding are atomic and cost the same with 200 waiters).
        self.waiting: set[object] = set()
        self._putconn = putconn
        #: The psycopg connection behind a parked one (its ``pgrp_state``).
        self._raw = raw
        _sweeper.watch(self)

    def take(self) -> Any:
        """A parked connection, or ``None``."""
        parked = self.parked
        if parked:
            try:
                # An asynchronous exception landing right after pop() loses
                # the connection: the same one-instruction window as the
                # pool's own popleft() under its lock.
                return parked.pop()
            except IndexError:  # another thread took the last one
                pass
        return None

    def after_park(self) -> None:
        """A release just parked: hand over to an announced borrower, wake the sweeper."""
        while self.waiting and (conn := self.take()) is not None:
            self._putconn(conn)
        if Lane.sweeper_idle:
            _sweeper.rouse()

    def sweep(self, now: float) -> None:
        """Send back every connection parked longer than :data:`PARK_MAX`."""
        parked = self.parked
        while parked:
            try:
                oldest = parked[0]  # the least recently released
            except IndexError:
                return
            if now - self._raw(oldest).pgrp_state.returned_at <= PARK_MAX:
                return
            try:
                parked.remove(oldest)
            except ValueError:  # a borrower took it meanwhile
                continue
            self._putconn(oldest)

    def drain(self, *, discard: bool = False) -> None:
        """Give back what is parked; ``discard``: close each connection first
        (its pool is gone: nobody must use it again)."""
        while (conn := self.take()) is not None:
            if discard:
                self._raw(conn).close()
            self._putconn(conn)

    def close(self, *, discard: bool = False) -> None:
        """Park nothing more; give back (or discard) what is parked."""
        self.waiting.add(_CLOSED)
        self.drain(discard=discard)

    def __len__(self) -> int:
        return len(self.parked)


class _Sweeper:
    """One daemon thread per process: sends back connections parked too long.

    Without it, connections parked when a process falls idle would stay lent
    out: the pool could not shrink, and its statistics would count them busy.
    It looks every half :data:`PARK_MAX` while some lane has a parked
    connection, and sleeps on a condition otherwise (a park wakes it: see
    ``Lane.sweeper_idle``). A fork child starts its own at its first lane.
    """

    def __init__(self) -> None:
        self._lanes: weakref.WeakSet[Lane] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._started = False

    def watch(self, lane: Lane) -> None:
        with self._lock:
            self._lanes.add(lane)
            if not self._started:
                self._started = True
                threading.Thread(
                    target=self._run, name="django_pg_real_pool-lane-sweeper", daemon=True
                ).start()

    def rouse(self) -> None:
        with self._lock:
            if Lane.sweeper_idle:
                Lane.sweeper_idle = False
                self._wake.notify()

    def _run(self) -> None:
        while True:
            sleep(PARK_MAX / 2)  # a period, not a wait for an event
            now = monotonic()
            for lane in list(self._lanes):
                if lane.parked:
                    try:
                        lane.sweep(now)
                    except Exception:  # never let one bad return end the sweeper
                        logger.exception("giving back a parked connection failed")
            with self._lock:
                # Idle first, then look: a park either sees the flag (and
                # wakes this thread, whose wait releases the lock) or happened
                # before the look below.
                Lane.sweeper_idle = True
                if any(lane.parked for lane in list(self._lanes)):
                    Lane.sweeper_idle = False
                    continue
                while Lane.sweeper_idle:
                    self._wake.wait()


_sweeper = _Sweeper()


def _after_fork_in_child() -> None:
    global _sweeper
    # Threads do not survive fork, and the inherited lock may be held; the
    # parent's lanes belong to pools the child forgets.
    _sweeper = _Sweeper()
    Lane.sweeper_idle = False


os.register_at_fork(after_in_child=_after_fork_in_child)
