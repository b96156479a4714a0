"""One alias's connection supply in this process: between "a wrapper wants a
connection" and "the connection is back".

A borrow and a return through psycopg_pool take its lock on each side, with
statistics (``benchmarks.borrow``: 2.6 µs of CPU, twice a parked pair's). A
:class:`Supply` keeps in front of the pool (its ``_pools.PoolAdapter``)
**parked connections** (released while nobody waits, LIFO: the next borrow of
any thread takes the most recently used) and **a queue of borrowers** (FIFO,
once every connection the pool may lend is out: a release hands its
connection straight to the longest waiter, asleep on its ``HeldBox.signal``;
see ``_waiters.py``). For the pool, parked and handed-over connections are
still lent out. The rules that keep the pool's own behaviour intact, all
decided under the supply's ``_lock``:

* **Nobody waits while a connection is parked or idle in the pool.** A
  borrower, under the lock, takes a parked connection, or joins the queue
  (only when the pool has nothing left to lend), or announces itself in
  ``_waiting`` on its way to the pool's own queue. A release, under the lock,
  hands over to the queue's head, else parks unless a borrower is announced
  (then it goes to the pool, which serves its own queue in order). A return
  to the pool wakes the queue's head with no connection when the pool has
  one to lend. An asynchronous exception (a task's time limit) can cut such
  a wake-up short: a borrower queued :data:`PARK_MAX` without one asks the
  pool itself.
* **The pool sees every connection at least every** :data:`PARK_MAX`
  **seconds.** A connection lent by the pool longer than that goes back
  through it on release (max_lifetime, ``drain()`` and SQLAlchemy's recycle
  apply there). One parked longer than that goes back too, from the sweeper
  thread, so the pool can shrink and its statistics read right when the
  process falls idle.
* :meth:`Supply.close` (``close_pool()``, a replaced pool) refuses parking and
  queueing for good, returns whatever is parked and sends the queue to the
  pool, which tells each borrower where the new pool is.
* **A connection is never lost to an asynchronous exception.** The
  borrower's :class:`HeldBox` names the connection from the moment the pool
  (or a release) hands it over until it is back; the task bracket, or the
  wrapper's next borrow, finds what an interrupted hand-over left there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import TooManyRequests

from . import _failover, _session, _strays, _waiters
from ._pooler import PoolerCheck
from ._pools import WaitedInVain, ping_fails
from ._strays import PARK_MAX
from ._waiters import HeldBox
from .errors import PoolExhausted

if TYPE_CHECKING:
    from ._counters import LeaseCounters
    from ._pools import Configure, PoolAdapter

logger = logging.getLogger("django_pg_real_pool")

_IDLE = TransactionStatus.IDLE
# Stale connections replaced in one borrow before giving up (the pool refills
# in the background; a server that is down fails fast instead of looping).
_MAX_STALE_IN_ONE_BORROW = 64


class Supply:
    """One alias's pool adapter, parked connections and queued borrowers
    (shared by every thread of the process). See the module docstring."""

    #: Benchmark-only switch (``benchmarks.paired --lane-queue``): ``False``
    #: sends borrowers that find nothing to the pool's own queue instead of
    #: this supply's. Set on a live instance; not a user setting.
    lane_queue = True

    def __init__(self, engine: str, adapter: PoolAdapter, configure: Configure | None = None):
        #: The ``ENGINE`` setting that made the pool (telemetry names it).
        self.engine = engine
        self.adapter = adapter
        self.alias = adapter.alias
        #: ``raw(conn)`` is ``conn`` itself (lets the hot path skip the call).
        self.raw_is_conn = adapter.raw_is_conn
        self._configure = configure
        #: Connections returned before this ``monotonic()`` time are checked
        #: before reuse (unlocked: a float store; a late read pings once more).
        self.suspect_before = 0.0
        self._pooler: PoolerCheck | None = None
        self._drained_at = 0.0
        # Guards every field below. Critical sections are a few list and set
        # operations; pool calls and I/O happen outside.
        self._lock = threading.Lock()
        #: Released connections, most recent last.
        self._parked: list[Any] = []
        #: Borrowers waiting for a release, longest first (their HeldBox).
        self._queue: deque[HeldBox] = deque()
        #: Borrowers on their way into the pool's own queue (their HeldBox).
        self._waiting: set[HeldBox] = set()
        #: Connections the pool has lent (parked ones included).
        self._lent: set[Any] = set()
        #: At ``_capacity`` lent, borrowers queue here (None: no limit).
        self._capacity, self._max_waiting = adapter.limits()
        self._errors = 0  # borrowers that gave up in the queue, or found it full
        self._closed = False
        _strays.watch(self)

    # -- borrowing -----------------------------------------------------------

    def get(self, box: HeldBox, counters: LeaseCounters, idle_check: float | None) -> Any:
        """A working connection, named by ``box`` from the moment it is handed
        over. Replaces stale ones (a ping when returned before a broken one
        was found, idle longer than ``idle_check``, or readable). Raises
        ``PoolExhausted``/``TooManyRequests``, or ``PoolGone``: the alias has
        a new pool (ask the registry)."""
        if _strays.orphans:
            _strays.return_orphans()
        if box.conn is not None:
            # An asynchronous exception cut a hand-over short, no bracket ran.
            box_supply = box.supply
            assert box_supply is not None
            box_supply.discard(box, counters)
        stale = 0
        while True:
            t0 = monotonic()
            # Most borrows take a connection another release parked.
            with self._lock:
                if self._parked:
                    # An asynchronous exception landing between the pop and
                    # the store loses the connection: the same one-instruction
                    # window as the pool's own popleft() under its lock.
                    box.supply = self
                    box.conn = conn = self._parked.pop()
                else:
                    conn = None
            if conn is None:
                try:
                    conn = self._borrow(box, counters, t0 + self.adapter.timeout)
                except PoolExhausted:
                    counters.timeouts += 1
                    raise
            raw = conn if self.raw_is_conn else self.adapter.raw(conn)
            state = raw.pgrp_state
            if (
                state.returned_at >= self.suspect_before
                and (idle_check is None or t0 - state.returned_at <= idle_check)
                and not state.poller.poll(0)
            ):
                break
            counters.pings += 1
            if not ping_fails(raw):
                break
            # Never hand out a dead connection: drop it; the pool replaces it.
            stale += 1
            counters.stale += 1
            self.suspect_before = monotonic()
            raw.close()
            self._putconn(conn)
            box.conn = None
            if stale >= _MAX_STALE_IN_ONE_BORROW:
                raise psycopg.OperationalError(
                    f"database alias {self.alias!r}: {stale} pooled connections in a row "
                    "failed their health check; is the server up?"
                )
        now = monotonic()
        counters.acquires += 1
        counters.wait_us += (now - t0) * 1e6
        box.since = now
        return conn

    def _borrow(self, box: HeldBox, counters: LeaseCounters, deadline: float) -> Any:
        """Nothing was parked: a release's connection through the queue, once
        the pool has lent all it can; else the pool's. Fills ``box``."""
        queue_allowed = self.lane_queue
        while True:
            refused = 0
            with self._lock:
                if self._parked:
                    box.supply = self
                    box.conn = conn = self._parked.pop()
                    return conn
                queue = queue_allowed and not self._closed and (bool(self._queue) or self._full())
                if queue and self._max_waiting and len(self._queue) >= self._max_waiting:
                    self._errors += 1
                    refused = len(self._queue)
                elif queue:
                    self._queue.append(box)
            if refused:
                # What psycopg_pool raises for its own queue.
                raise TooManyRequests(
                    f"database alias {self.alias!r}: {refused} requests are already "
                    "waiting for a connection, the pool's max_waiting. To fix: raise "
                    f"DATABASES[{self.alias!r}]['OPTIONS']['pool']['max_waiting'] "
                    "(or 'max_size')"
                )
            if not queue:
                return self._from_pool(box, deadline)
            counters.queued += 1
            conn = _waiters.wait(self._queue, box, self._lock, deadline, self.adapter.lendable)
            if conn is _waiters.TIMED_OUT:
                with self._lock:
                    self._errors += 1
                raise self._exhausted()
            if conn is not None:
                return conn
            # Woken with nothing: the pool has a connection to lend.
            queue_allowed = False

    def _from_pool(self, box: HeldBox, deadline: float) -> Any:
        """Borrow from the pool itself, announced in ``_waiting`` meanwhile."""
        try:
            # Announced (inside the try: an asynchronous exception lands
            # after add() returns): from here on, releases go to the pool.
            with self._lock:
                self._waiting.add(box)
                if self._parked:  # parked before the announcement
                    box.supply = self
                    box.conn = conn = self._parked.pop()
                    return conn
            try:
                conn = self.adapter.getconn(max(deadline - monotonic(), 0.001))
            except WaitedInVain as exc:
                # Chained to the pool's own error, as before the supply.
                raise self._exhausted() from exc.__cause__
            # Boxed before anything an asynchronous exception can interrupt.
            box.supply = self
            box.conn = conn
            with self._lock:
                self._lent.add(conn)
            # Every connection visits the pool at least every PARK_MAX: a
            # resize() reaches the supply soon enough.
            self._capacity, self._max_waiting = self.adapter.limits()
            raw = conn if self.raw_is_conn else self.adapter.raw(conn)
            raw.pgrp_state.lent_at = monotonic()
            if raw.pgrp_state.pooler is not False:
                self._check_pooler(raw, conn, box)
            return conn
        finally:
            with self._lock:
                self._waiting.discard(box)
            # A connection that came back to the pool while this borrower was
            # announced went unclaimed if it found another (looked at after
            # the discard, under the lock again).
            self._wake_next()

    def _check_pooler(self, raw: Any, conn: Any, box: HeldBox) -> None:
        """A physical connection's first lend: the pooler check (``_pooler.py``).
        On refusal the connection goes back before the error is raised."""
        if self._pooler is None:
            self._pooler = PoolerCheck.of_alias(self.alias)
        try:
            self._pooler.check_first_lend(raw)
        except BaseException:
            self._putconn(conn)
            box.conn = None
            raise

    def _full(self) -> bool:
        # Under _lock: the pool has nothing to lend that nobody has claimed.
        return self._capacity is not None and len(self._lent) + len(self._waiting) >= self._capacity

    def _wake_next(self) -> bool:
        """Wake the queue's head with no connection, if the pool has one to
        lend (or is closed: it tells the borrower where the new one is)."""
        with self._lock:
            if not self._queue or (not self._closed and self._full()):
                return False
            head = self._queue.popleft()
            head.conn = None
        head.signal.release()
        return True

    def _exhausted(self) -> PoolExhausted:
        stats = self.stats()
        with self._lock:
            lent = len(self._lent)
        return self.adapter.exhausted(stats, lent)

    # -- giving back ---------------------------------------------------------

    def put(self, conn: Any, box: HeldBox, dirty: str | None, counters: LeaseCounters) -> None:
        """Take back ``conn`` (that ``box`` names until it is safe) whatever
        state it is in: hand it to a queued borrower or park it if clean and
        idle, else roll back, reset (``dirty``: why) or discard it, and return
        it to the pool."""
        raw = conn if self.raw_is_conn else self.adapter.raw(conn)
        state = raw.pgrp_state
        now = monotonic()
        counters.releases += 1
        counters.use_us += (now - box.since) * 1e6
        if dirty is None and raw.autocommit and raw.pgconn.transaction_status == _IDLE:
            # The common case: clean, idle (hence not broken), in autocommit.
            state.returned_at = now
            if now - state.lent_at < PARK_MAX:
                with self._lock:
                    if self._queue:
                        # To the longest-waiting borrower. Attribute stores
                        # only up to the release: an asynchronous exception
                        # lands before all of them or after all of them.
                        head = self._queue.popleft()
                        head.supply = self
                        head.conn = conn
                        box.conn = None
                        head.signal.release()
                        return
                    if not self._waiting and not self._closed:
                        # No check point between these two lines: the
                        # interpreter checks for asynchronous exceptions after
                        # the call, when both are done.
                        box.conn = None
                        self._parked.append(conn)
                        parked = True
                    else:
                        parked = False
                if parked:
                    if _strays.idle:
                        _strays.rouse()
                    return
            self._putconn(conn)
            box.conn = None
            return
        try:
            if _session.clean(raw, dirty, self.alias) and dirty is not None:
                counters.resets += 1
                # DISCARD ALL undid the set-up too: redo it (and tell
                # connection_created receivers) at the next borrow.
                state.setup_gen = 0
                state.announced = False
                # ... and what the session context had applied (_replay.py).
                state.replayed = None
        finally:
            if raw.closed:
                counters.discards += 1
                self.suspect_before = now
            state.returned_at = monotonic()
            self._putconn(conn)
            box.conn = None

    def discard(self, box: HeldBox, counters: LeaseCounters | None) -> None:
        """Close and return the connection in ``box`` its wrapper does not hold
        (an interrupted hand-over, a failed set-up): its state is unknown."""
        conn = box.conn
        box.conn = None
        if counters is not None:
            counters.discards += 1
        self.discard_conn(conn)

    def discard_conn(self, conn: Any) -> None:
        """Close ``conn`` (lent by this supply's pool) and return it."""
        self.adapter.raw(conn).close()
        self._putconn(conn)

    def _putconn(self, conn: Any) -> None:
        """Return ``conn`` to the pool itself."""
        with self._lock:
            # Uncounted first: an asynchronous exception in between may leave
            # one connection too few counted (borrowers then try the pool, and
            # wait there), never one too many (they would queue for nothing).
            self._lent.discard(conn)
        raw = self.adapter.raw(conn)
        failover = _failover.close_if_failed_over(raw)
        self.adapter.putconn(conn)
        self._wake_next()  # a queued borrower may borrow it there
        if failover and raw.pgrp_state.lent_at > self._drained_at:
            self.drain()

    def give_back(self, *, discard: bool = False) -> None:
        """Return every parked connection to the pool (``discard``: closed
        first: its pool is gone, nobody must use it again)."""
        with self._lock:
            parked, self._parked = self._parked, []
        for conn in parked:
            if discard:
                self.adapter.raw(conn).close()
            self._putconn(conn)

    def sweep(self, now: float) -> None:
        """Return every connection parked longer than :data:`PARK_MAX`."""
        raw = self.adapter.raw
        with self._lock:
            parked = self._parked
            n = 0  # the list is in release order: the oldest first
            while n < len(parked) and now - raw(parked[n]).pgrp_state.returned_at > PARK_MAX:
                n += 1
            old, parked[:n] = parked[:n], []
        for conn in old:
            self._putconn(conn)

    def has_parked(self) -> bool:
        return bool(self._parked)  # the sweeper's unlocked glance (a len read)

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when they come back."""
        # Unlocked: two threads may both drain after one failover, which only
        # replaces connections once more.
        _failover.log_drain(self.alias)
        self._drained_at = monotonic()
        self.adapter.drain()
        self.give_back()

    def close(self, *, discard: bool = False, pool: bool = True) -> None:
        """Park and queue nothing more; close the pool (``pool``: False when
        its engine already replaced it); give back (``discard``: close) what
        is parked; send queued borrowers to the pool, which tells them where
        the new one is; cut the pool's configure callback loose. Idempotent."""
        with self._lock:
            self._closed = True
        try:
            if pool:
                self.adapter.close(lambda: self.give_back(discard=discard))
            else:
                self.give_back(discard=discard)
            while self._wake_next():
                pass
        finally:
            if pool and self._configure is not None:
                self._configure.detach()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def stats(self) -> dict[str, int]:
        """The pool's counters with this supply's share: parked connections
        count as available (``pool_parked``), queued borrowers as waiting
        (``lane_waiting``), their timeouts and refusals as errors."""
        stats = dict(self.adapter.stats())
        with self._lock:
            parked, queued, errors = len(self._parked), len(self._queue), self._errors
        stats["pool_available"] = stats.get("pool_available", 0) + parked
        if "pool_checked_out" in stats:  # SQLAlchemy counts parked ones out
            stats["pool_checked_out"] -= parked
        stats["pool_parked"] = parked
        stats["requests_waiting"] = stats.get("requests_waiting", 0) + queued
        stats["lane_waiting"] = queued
        stats["requests_errors"] = stats.get("requests_errors", 0) + errors
        return stats

    def queued(self) -> list[HeldBox]:
        """The boxes of the borrowers in the queue, longest-waiting first."""
        with self._lock:
            return list(self._queue)
