"""Connections passed between this process's borrowers without the pool.

A borrow and a return through psycopg_pool cost about 11 µs together (a lock
on each side, statistics, logging calls, the expiry check): more than all the
engine's own bookkeeping, paid twice per request. Waiting in its queue costs
far more: a ``Condition`` built per wait, notified under two locks. A
:class:`Lane` keeps two things in front of the pool:

* **parked connections**: what is released while nobody waits, in a LIFO
  list; the next borrow of any thread of the process pops the most recently
  used connection without a lock;
* **a queue of borrowers** (FIFO), used once every connection the pool may
  lend is out: a release hands its connection straight to the longest waiter,
  which sleeps on a lock of its own (its ``HeldBox.signal``).

For the pool, parked and handed-over connections are still lent out. These
rules keep the pool's own behaviour intact:

* **Nobody waits while a connection is parked or idle in the pool.** Each
  side announces itself, then looks at the other: a borrower joins the queue
  (or, on its way into the pool's own queue, :attr:`Lane.waiting`) before its
  last look at the parked list and at the count of lent connections; a
  release parks before it looks at the queue, and a return to the pool drops
  the count before it looks. List and set operations are atomic, so no
  interleaving leaves a connection parked, or idle in the pool, while a
  queued borrower sleeps: a return to the pool wakes the head of the queue
  with no connection (:meth:`Lane.nudge`), and it borrows from the pool. An
  asynchronous exception (a task's time limit) can cut such a wake-up short:
  a borrower queued :data:`PARK_MAX` without one asks the pool itself.
* A release goes to the pool's queue while someone waits there (psycopg_pool
  serves it in order); those waits are short-lived (a borrower goes there
  only when the pool has a connection to lend, or is opening one).
* **The pool sees every connection at least every** :data:`PARK_MAX`
  **seconds.** A connection lent by the pool longer than that goes back
  through it on release (max_lifetime, ``drain()`` and SQLAlchemy's recycle
  apply there). One parked longer than that goes back too, from the sweeper
  thread, so the pool can shrink and its statistics read right when the
  process falls idle.
* :meth:`Lane.close` (``close_pool()``, a replaced pool) refuses parking and
  queueing for good, returns whatever is parked and sends the queue to the
  pool, which tells each borrower where the new pool is.

The borrowing and releasing themselves are inline in ``_lease.py``: the lane
is only the lists, the slow paths and the sweeper.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from time import monotonic, sleep
from typing import Any

logger = logging.getLogger("django_pg_real_pool")

#: Longest a connection stays out of the pool between two visits, and longest
#: it stays parked (seconds).
PARK_MAX = 1.0

#: A permanent announcement: a closed lane never parks again.
_CLOSED = object()


class Lane:
    """One pool's parked connections and queued borrowers (shared by every
    thread of the process)."""

    __slots__ = (
        "__weakref__",
        "_adapter",
        "capacity",
        "closed",
        "errors",
        "lent",
        "max_waiting",
        "parked",
        "queue",
        "waiting",
    )

    #: The sweeper sleeps until a park wakes it (read on every park: a class
    #: attribute, no lock).
    sweeper_idle = False

    def __init__(self, adapter: Any, capacity: int | None) -> None:
        #: Released connections, most recent last (lock-free: list operations
        #: are atomic).
        self.parked: list[Any] = []
        #: Borrowers waiting for a release, longest first (their HeldBox).
        self.queue: deque[Any] = deque()
        #: Borrowers on their way into the pool's own queue, and _CLOSED (a
        #: set: adding and discarding are atomic and cost the same with 200
        #: waiters).
        self.waiting: set[object] = set()
        #: Connections the pool has lent (parked ones included); at
        #: ``capacity`` the pool has nothing to lend and borrowers queue here.
        self.lent: set[Any] = set()
        #: The most the pool lends at once (``None``: no limit, no queue).
        self.capacity = capacity if capacity is not None else 1 << 62
        self.closed = False
        #: Most borrowers queued at once (0: no limit): psycopg_pool's
        #: ``max_waiting``, which its own queue no longer sees.
        self.max_waiting = 0
        #: Borrowers that gave up waiting in the queue, or found it full (the
        #: pool counts its own).
        self.errors = 0
        # The adapter holds the lane: a weak reference back keeps the pair out
        # of a reference cycle, so a closed pool is freed as soon as the last
        # wrapper lets go of it, not at some later garbage collection.
        self._adapter = weakref.ref(adapter)
        _sweeper.watch(self)

    @property
    def adapter(self) -> Any:
        """The pool adapter this lane is in front of (its putconn and raw)."""
        return self._adapter()

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

    def hand(self, conn: Any, giver: Any = None) -> bool:
        """Give ``conn`` to the longest-queued borrower; ``False``: nobody queued.

        ``giver``: the releasing wrapper's box, emptied in the same
        uninterruptible stretch that fills the waiter's.
        """
        try:
            box = self.queue.popleft()
        except IndexError:
            return False
        # Attribute stores only, up to the release: an asynchronous exception
        # lands before all of them (the giver's box still names the
        # connection) or after all of them.
        box.adapter = self.adapter
        box.conn = conn
        if giver is not None:
            giver.conn = None
        box.signal.release()
        return True

    def nudge(self) -> None:
        """Wake the longest-queued borrower with no connection: the pool has
        one for it (or will open one)."""
        try:
            box = self.queue.popleft()
        except IndexError:
            return
        box.conn = None
        box.signal.release()

    def withdraw(self, box: Any) -> bool:
        """Take ``box`` out of the queue; ``False``: a release or a nudge
        already took it out, and is about to wake it."""
        try:
            self.queue.remove(box)
        except ValueError:
            return False
        return True

    def offer(self, conn: Any, giver: Any) -> None:
        """Pass on a clean connection (that ``giver``, a box, holds, if not
        ``None``): to the queue's head, else parked."""
        if not self.hand(conn, giver):
            if giver is not None:
                giver.conn = None
            self.parked.append(conn)
            self.after_park()

    def full(self) -> bool:
        """Whether the pool has nothing to lend that nobody has claimed: it
        lent ``capacity`` connections, or lends its last ones to the
        borrowers on their way into its queue."""
        return len(self.lent) + len(self.waiting) >= self.capacity

    def returned(self) -> None:
        """A connection went back to the pool (the adapters' ``putconn``,
        which uncounted it first): a queued borrower may borrow it there."""
        # Uncounted before this look; a borrower joining the queue looks at
        # the count after joining (see the module docstring).
        if self.queue and not self.full():
            self.nudge()

    def after_park(self) -> None:
        """A release just parked: pass it on to a borrower who announced
        itself meanwhile; wake the sweeper."""
        while self.waiting and (conn := self.take()) is not None:
            self.adapter.putconn(conn)
        while self.queue and (conn := self.take()) is not None:
            if not self.hand(conn):
                self.parked.append(conn)  # the queue emptied meanwhile
                break
        if Lane.sweeper_idle:
            _sweeper.rouse()

    def sweep(self, now: float) -> None:
        """Send back every connection parked longer than :data:`PARK_MAX`."""
        parked = self.parked
        raw = self.adapter.raw
        while parked:
            try:
                oldest = parked[0]  # the least recently released
            except IndexError:
                return
            if now - raw(oldest).pgrp_state.returned_at <= PARK_MAX:
                return
            try:
                parked.remove(oldest)
            except ValueError:  # a borrower took it meanwhile
                continue
            self.adapter.putconn(oldest)

    def drain(self, *, discard: bool = False) -> None:
        """Give back what is parked; ``discard``: close each connection first
        (its pool is gone: nobody must use it again)."""
        while (conn := self.take()) is not None:
            if discard:
                self.adapter.raw(conn).close()
            self.adapter.putconn(conn)

    def close(self, *, discard: bool = False) -> None:
        """Park and queue nothing more; give back (or discard) what is parked;
        send queued borrowers to the pool (closed: it tells them so)."""
        self.closed = True
        self.waiting.add(_CLOSED)
        self.drain(discard=discard)
        while self.queue:
            self.nudge()

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
