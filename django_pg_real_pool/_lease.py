"""When a pooled connection is held, and when it goes back.

:class:`LeaseMixin` goes in front of a Django PostgreSQL ``DatabaseWrapper``.
The wrapper borrows a connection when Django first needs one
(``ensure_connection()``) and gives it back as soon as nothing holds it. The
holders are:

* open cursors (counted; a server-side cursor until it is closed),
* a transaction: ``atomic()``, autocommit switched off, or a transaction the
  server reports open (``BEGIN`` sent as raw SQL),
* ``pinned()`` blocks (counted),
* session state the code set outside ``pinned()`` (the connection then stays
  until ``close()``: end of request or task).

Borrowing skips Django's ``connect()``: each physical connection is configured
once (time zone, role, isolation level, ``connection_created``; see
``_setup.py``), so a re-borrow is a few attribute writes and a connection
from the lane (parked by a release, or handed over in its queue once every
connection is out; see ``_lane.py``) or from the pool. Giving back parks the
connection or hands it to a queued borrower; it goes back to the pool once a
second, or after a rollback or a ``DISCARD ALL`` when it needs one.
"""

from __future__ import annotations

import logging
import sys
import traceback
from asyncio import _get_running_loop
from time import monotonic
from typing import TYPE_CHECKING, Any

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS, RAN_DB_VERSION_CHECK, BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.utils import ProgrammingError
from django.utils.asyncio import async_unsafe
from psycopg.pq import TransactionStatus
from psycopg_pool import TooManyRequests

from . import _context, _counters, _leaks, _registry, _replay, _session, _session_policy, _setup
from ._compat import DJANGO_ENSURE_CONNECTION, check_not_async
from ._cursors import (
    LeasedCursorDebugWrapper,
    LeasedCursorWrapper,
    LeasedServerCursorDebugWrapper,
    LeasedServerCursorWrapper,
)
from ._lane import PARK_MAX, Lane
from ._pools import ConnState, PoolAdapter, PoolGone
from ._settings import RealPoolSettings, parse_settings
from ._setup import ConnectionSetupMixin
from ._validate import check_conn_max_age, differs_from_alias, warn_no_pool
from .checks import DatabaseValidation
from .errors import PoolExhausted

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper

    _Base = PGWrapper
else:
    _Base = object

logger = logging.getLogger("django_pg_real_pool")

_IDLE = TransactionStatus.IDLE
_INTRANS_OR_ERROR = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
# Stale connections replaced in one acquire before giving up (the pool refills
# in the background; a server that is down fails fast instead of looping).
_MAX_STALE_IN_ONE_ACQUIRE = 64


class LeaseMixin(ConnectionSetupMixin):
    """Release-as-soon-as-possible behaviour for a Django PostgreSQL wrapper.

    Engines provide :meth:`_lease_make_adapter`; everything else is shared.
    """

    # `manage.py check --database <alias>` runs this package's checks on the
    # alias, whether or not the app is installed.
    validation_class = DatabaseValidation

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease_adapter: PoolAdapter | None = None
        self._lease_settings: RealPoolSettings | None = None
        self._lease_enabled = self._lease_is_enabled()
        if self._lease_enabled:
            # A released wrapper is in the configured mode (Django starts
            # with False and fixes it at connect(); get_autocommit() and the
            # task bracket read it without borrowing).
            self.autocommit = bool(self.settings_dict["AUTOCOMMIT"])
        # Inside a test-isolation guard's ensure_connection() (see there).
        self._lease_guarded = False
        self._lease_raw: Any = None
        self._lease_state: ConnState | None = None
        self._lease_cursors = 0
        self._lease_pins = 0
        self._lease_sticky = False
        self._lease_dirty: str | None = None
        self._lease_configuring = False
        # Bumped at every borrow and return: cursors of another borrow see it changed.
        self._lease_gen = 0
        self._lease_acquired_at = 0.0
        self._lease_site: list[traceback.FrameSummary] | None = None
        # Record each borrow's call site (leak_threshold set; see _lease_prepare).
        self._lease_track_site = False
        self._lease_counters = _counters.new_counters()
        self._lease_box = _registry.register(self)

    # -- hooks for engines ------------------------------------------------

    def _lease_is_enabled(self) -> bool:
        """Whether this wrapper borrows per query (False: stock behaviour).

        Not for Django's no-database wrapper (test database set-up), nor with
        an explicit ``OPTIONS["pool"] = False``: that alias then holds its
        connection like the engine underneath does without this package (the
        native engine: a dedicated connection; the dj engine: one held from
        the SQLAlchemy pool). Nor for a wrapper that carries the alias's name
        but reaches another database (see ``differs_from_alias``).
        """
        if self.alias == NO_DB_ALIAS:
            return False
        if self.settings_dict["OPTIONS"].get("pool", None) is False:
            warn_no_pool(self.alias)
            return False
        # A one-off wrapper for another database under this alias's name gets
        # a connection of its own, as Django's stock backend without pool.
        return not differs_from_alias(self.alias, self.settings_dict)

    def _lease_make_adapter(self) -> PoolAdapter:
        """Create (or find) this alias's pool; validate its settings."""
        raise NotImplementedError

    # -- Django hooks -------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        # Our settings must not reach psycopg.connect().
        params.pop("real_pool", None)
        return params

    def get_autocommit(self) -> bool:
        # Answer without borrowing: a released wrapper is always in the
        # configured mode (it is never released with autocommit off).
        if self.connection is None and self._lease_enabled and not self.in_atomic_block:
            return bool(self.settings_dict["AUTOCOMMIT"])
        return super().get_autocommit()

    def ensure_connection(self) -> None:
        # Called on every cursor(): the held case returns before anything else.
        # Django's @async_unsafe (an exception raised and caught per call) is
        # replaced by the same check where it matters, before borrowing.
        if self.connection is not None:
            return
        # Decided per borrow, as Django reads OPTIONS["pool"] per connect: code
        # may edit settings_dict after __init__ (copy() then OPTIONS["pool"] =
        # False, as Django's own tests do). Inline: this runs for every query.
        if not self._lease_enabled or self.settings_dict["OPTIONS"].get("pool", None) is False:
            self._lease_enabled = self._lease_is_enabled()
            if not self._lease_enabled:
                super().ensure_connection()
                return
        if (
            BaseDatabaseWrapper.ensure_connection is not DJANGO_ENSURE_CONNECTION
            and not self._lease_guarded
        ):
            # A test-isolation guard replaced Django's method on the class
            # (SimpleTestCase's threaded-connection check, pytest-django's
            # database blocker): let it decide. It calls connect(), or this
            # method again (a guard that kept the bound method), which then
            # borrows below instead of recursing.
            self._lease_guarded = True
            try:
                super().ensure_connection()
            finally:
                self._lease_guarded = False
            return
        if _get_running_loop() is not None:
            check_not_async()
        if self.in_atomic_block and self.closed_in_transaction:
            raise ProgrammingError("Cannot open a new connection in an atomic block.")
        try:
            self._lease_connect()
        except Exception:
            # Django's error translation, paid only when there is an error
            # (entering wrap_database_errors costs two calls per borrow).
            with self.wrap_database_errors:
                raise

    def close_if_health_check_failed(self) -> None:
        # Every borrow checks its connection (_lease_acquire), as Django skips
        # this for its own pool: a held connection was checked when borrowed.
        if self._lease_enabled:
            return
        super().close_if_health_check_failed()

    @async_unsafe
    def connect(self) -> None:
        # Decided per connect, as Django reads OPTIONS["pool"] per connect:
        # code may edit settings_dict after __init__ (copy() then
        # OPTIONS["pool"] = False, as Django's own tests do).
        self._lease_enabled = self._lease_is_enabled()
        if not self._lease_enabled:
            super().connect()
            return
        self._lease_connect()

    def _lease_connect(self) -> None:
        """``connect()`` for a pooled wrapper: borrow, no per-connect set-up."""
        if self._lease_settings is None:
            self._lease_prepare()
        # The same resets as BaseDatabaseWrapper.connect(), minus the per-connect
        # work (settings checks, connection params) done once in _lease_prepare.
        # A released wrapper is almost always in this state already: write
        # the lists only when something was left in them.
        self.in_atomic_block = False
        if self.savepoint_ids:
            self.savepoint_ids = []
        if self.atomic_blocks:
            self.atomic_blocks = []
        self.needs_rollback = False
        self.closed_in_transaction = False
        self.errors_occurred = False
        self.health_check_done = True
        if self.run_on_commit:
            self.run_on_commit = []
        self._lease_acquire()
        if self.settings_dict["AUTOCOMMIT"]:
            # Pooled connections are always in autocommit: nothing to send.
            self.autocommit = True
        else:
            self.set_autocommit(False)
        if self.alias not in RAN_DB_VERSION_CHECK:
            # Django reads the version with a query on a temporary cursor,
            # whose close would release the connection under connect(): read
            # it from the connection instead (no round trip).
            self.__dict__.setdefault("pg_version", self._lease_raw.info.server_version)
            # Only the base class part: the PostgreSQL part configures the
            # connection, done once per physical connection in _lease_configure.
            BaseDatabaseWrapper.init_connection_state(self)

    def set_autocommit(
        self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False
    ) -> None:
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)
        if autocommit and self._lease_enabled:
            # End of atomic() or of a manual transaction.
            self._lease_maybe_release()

    @async_unsafe
    def close(self) -> None:
        if not self._lease_enabled:
            super().close()
            return
        self.validate_thread_sharing()
        self.run_on_commit = []
        self._lease_sticky = False
        # What the replay option recorded ends here, as a pin would (_context.py).
        _context.drop_recorded(self.alias)
        if self.closed_in_transaction or self.connection is None:
            return
        try:
            self._lease_put(forced=True)
        finally:
            if self.in_atomic_block:
                self.closed_in_transaction = True
                self.needs_rollback = True

    def close_if_unusable_or_obsolete(self) -> None:
        # Django's skips a released wrapper (connection None), and calls it at
        # every request's start and end: recorded state ends with the request.
        if self._lease_enabled:
            _context.drop_recorded(self.alias)
        super().close_if_unusable_or_obsolete()

    def make_cursor(self, cursor: Any) -> Any:
        if not self._lease_enabled:
            return super().make_cursor(cursor)
        if isinstance(cursor, psycopg.ServerCursor):
            return LeasedServerCursorWrapper(cursor, self)
        return LeasedCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> Any:
        if not self._lease_enabled:
            return super().make_debug_cursor(cursor)
        if isinstance(cursor, psycopg.ServerCursor):
            return LeasedServerCursorDebugWrapper(cursor, self)
        return LeasedCursorDebugWrapper(cursor, self)

    # -- borrowing ----------------------------------------------------------

    def _lease_prepare(self) -> None:
        """First connect of this wrapper: validate settings, find the pool."""
        self.check_settings()
        settings = parse_settings(self.alias, self.settings_dict["OPTIONS"])
        # Every wrapper's, not only that of the wrapper creating the pool (a
        # copy() or another thread's wrapper has settings of its own). Read
        # once, as Django reads its pool's options once: an edit after this
        # wrapper's first borrow is seen after close_pool().
        check_conn_max_age(self.alias, self.settings_dict)
        self._lease_adapter = self._lease_make_adapter()
        self.health_check_enabled = self.settings_dict["CONN_HEALTH_CHECKS"]
        # CONN_MAX_AGE is 0 (checked above): any held connection is
        # "obsolete" for close_if_unusable_or_obsolete(), i.e. at request end.
        self.close_at = monotonic()
        self._lease_idle_check = settings.health_check_idle if self.health_check_enabled else None
        self._lease_settings = settings
        self._lease_track_site = settings.leak_threshold is not None
        if settings.leak_threshold is not None:
            # Starts this process's leak detector once; nothing runs when off.
            _leaks.watch(self.alias, settings.leak_threshold)

    def _lease_acquire(self) -> None:
        adapter = self._lease_adapter
        assert adapter is not None
        if _registry.orphans:
            _registry.return_orphans()
        counters = self._lease_counters
        # The box names the connection from the moment the pool hands it
        # over: an asynchronous exception landing anywhere below leaves it
        # findable by the task bracket instead of lost to the pool.
        box = self._lease_box
        if box.conn is not None:
            # Such an exception did land, and no bracket ran since.
            self._lease_drop_stray()
        stale = 0
        while True:
            t0 = monotonic()
            # Most borrows take a connection another release parked (_lane.py).
            conn = adapter.lane.take()
            if conn is not None:
                box.adapter = adapter
                box.conn = conn
            else:
                try:
                    adapter, conn = self._lease_borrow(adapter, box)
                except PoolExhausted:
                    counters.timeouts += 1
                    raise
            raw = conn if adapter.raw_is_conn else adapter.raw(conn)
            state: ConnState = raw.pgrp_state
            # Suspect only if returned before a connection was found broken,
            # idle longer than health_check_idle, or with something to read
            # on its socket (ConnState.poller); a suspect one gets a round trip.
            idle = self._lease_idle_check
            if (
                state.returned_at >= adapter.suspect_before
                and (idle is None or t0 - state.returned_at <= idle)
                and not state.poller.poll(0)
            ) or not self._lease_ping_fails(raw):
                break
            # Never hand out a dead connection: drop it; the pool replaces it.
            stale += 1
            counters.stale += 1
            adapter.suspect_before = monotonic()
            raw.close()
            adapter.putconn(conn)
            box.conn = None
            if stale >= _MAX_STALE_IN_ONE_ACQUIRE:
                raise psycopg.OperationalError(
                    f"database alias {self.alias!r}: {stale} pooled connections in a row "
                    "failed their health check; is the server up?"
                )
        now = monotonic()
        counters.acquires += 1
        counters.wait_us += (now - t0) * 1e6
        # One integer comparison: set up again only after DISCARD ALL or a
        # change of the database's types (see _setup.py).
        if state.setup_gen != _setup.generation:
            try:
                self._lease_configure(raw)
            except BaseException:
                raw.close()
                adapter.putconn(conn)
                box.conn = None
                raise
        self.connection = conn
        self._lease_raw = raw
        self._lease_state = state
        self._lease_gen += 1
        self._lease_acquired_at = now
        self._lease_dirty = None
        if self._lease_track_site:
            # Frames of the caller of ensure_connection()/connect() outwards;
            # source lines are read only if the stack is ever printed.
            site = traceback.StackSummary.extract(
                traceback.walk_stack(sys._getframe(3)), limit=30, lookup_lines=False
            )
            site.reverse()
            self._lease_site = site
        if not state.announced:
            state.announced = True
            with self._lease_configuring_block():
                connection_created.send(sender=self.__class__, connection=self)
        # The borrower's session context, before its first statement (_replay.py).
        _replay.on_borrow(self, raw, state)

    def _lease_borrow(
        self, adapter: PoolAdapter, box: _registry.HeldBox
    ) -> tuple[PoolAdapter, Any]:
        """Borrow when nothing was parked: from a release, through the lane's
        queue, once the pool has lent all it can; else from the pool. Sets ``box``."""
        gone = 0
        deadline = monotonic() + adapter.timeout
        while True:
            lane = adapter.lane
            if (lane.queue or lane.full()) and not lane.closed:
                conn = self._lease_queue(lane, box, deadline)
                if conn is not None:
                    return adapter, conn
                # Woken with nothing: the pool has a connection to lend.
            waiting = lane.waiting
            try:
                # Announced before the last look at the lane: from here on, a
                # release hands its connection to the pool's queue, not the
                # lane. (Inside the try: an asynchronous exception lands after
                # add() returns, and a stale announcement would hold up the
                # lane's queue.)
                waiting.add(box)
                conn = lane.take()
                if conn is not None:
                    box.adapter = adapter
                    box.conn = conn
                    return adapter, conn
                conn = adapter.getconn(max(deadline - monotonic(), 0.001))
                # Boxed before anything an asynchronous exception can
                # interrupt (the calls below).
                box.adapter = adapter
                box.conn = conn
                raw = conn if adapter.raw_is_conn else adapter.raw(conn)
                raw.pgrp_state.lent_at = monotonic()
                return adapter, conn
            except PoolGone:
                # close_pool() ran (test set-up, time zone change), or the
                # pool was replaced: the alias has a new pool.
                gone += 1
                if gone > 1:
                    raise
                lane.close(discard=True)
                adapter = self._lease_adapter = self._lease_make_adapter()
            finally:
                waiting.discard(box)
                # A connection that came back to the pool while this borrower
                # was announced went unclaimed if it found another: the head
                # of the lane's queue borrows it instead.
                if lane.queue and not lane.full():
                    lane.nudge()

    def _lease_queue(self, lane: Lane, box: _registry.HeldBox, deadline: float) -> Any:
        """Wait in ``lane``'s queue until a release hands over its connection.

        Returns that connection (boxed), or ``None``: borrow from the pool
        (the head of the queue was nudged, or the pool turned out to have a
        connection to lend). Raises ``PoolExhausted`` at ``deadline``.
        """
        if lane.max_waiting and len(lane.queue) >= lane.max_waiting:
            lane.errors += 1
            # What psycopg_pool raises for its own queue (Django reports it as
            # an OperationalError).
            raise TooManyRequests(
                f"database alias {self.alias!r}: {len(lane.queue)} requests are already "
                "waiting for a connection, the pool's max_waiting. To fix: raise "
                f"DATABASES[{self.alias!r}]['OPTIONS']['pool']['max_waiting'] (or 'max_size')"
            )
        signal = box.signal
        # A wake-up left over from a wait that an asynchronous exception ended.
        signal.acquire(blocking=False)
        conn = None
        # In the queue, or taken out by a release or a nudge: this box must
        # not be left in the queue. (Set before the append: an asynchronous
        # exception lands after append() returns, inside the try.)
        pending = False
        try:
            pending = True
            lane.queue.append(box)
            # Queued before the last looks: from here on, a release hands its
            # connection to the queue, and a return to the pool nudges it.
            conn = lane.take()
            timed_out = slept = False
            while conn is None and lane.full() and not lane.closed:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                if not slept:
                    slept = True
                    self._lease_counters.queued += 1
                if signal.acquire(timeout=min(remaining, PARK_MAX)):
                    pending = False
                    return box.conn
                # Nothing for PARK_MAX: ask the pool itself. A nudge that an
                # asynchronous exception cut short (a task's time limit on
                # another thread) must not leave this borrower asleep while
                # the pool has a connection to lend.
                if lane.adapter.lendable():
                    break
            if lane.withdraw(box):
                pending = False
                if timed_out:
                    lane.errors += 1
                    raise lane.adapter.exhausted()
            else:
                # A release or a nudge took this box out a few instructions
                # ago; its wake-up is on the way (unless an asynchronous
                # exception stopped that thread: then do without).
                signal.acquire(timeout=PARK_MAX)
                pending = False
                handed = box.conn  # set before the wake-up
                if handed is not None:
                    if conn is None:
                        return handed
                    # Two connections: keep the parked one, pass the other on.
                    lane.offer(handed, box)
            if conn is not None:
                box.adapter = lane.adapter
                box.conn = conn
            return conn
        except BaseException:
            # An asynchronous exception (a task's time limit), usually right
            # after the wake-up: leave the queue. A connection handed over
            # stays in the box, where the task bracket or this wrapper's next
            # borrow finds it; one taken from the parked list is passed on.
            if pending:
                lane.withdraw(box)
            if conn is not None and box.conn is not conn:
                lane.offer(conn, None)
            raise

    # -- giving back --------------------------------------------------------

    def _lease_drop_stray(self) -> None:
        """Discard the connection in the box that the wrapper does not hold: a
        borrow, a hand-over or a return an asynchronous exception cut short.
        Its state is unknown, so it is closed, never reused."""
        box = self._lease_box
        adapter, conn = box.adapter, box.conn
        box.conn = None
        self._lease_counters.discards += 1
        adapter.raw(conn).close()
        adapter.putconn(conn)

    def _lease_maybe_release(self) -> None:
        """Give the connection back if nothing holds it any more."""
        if (
            self._lease_cursors
            or self._lease_pins
            or self._lease_sticky
            or self.connection is None
            or self.in_atomic_block
            or not self.autocommit
            or self._lease_configuring
        ):
            return
        raw = self._lease_raw
        if raw.pgconn.transaction_status != _IDLE and not raw.closed:
            # A transaction begun with raw SQL: it stays on this connection,
            # as it would with the stock backend, until it ends.
            return
        self._lease_put(forced=False)

    def _lease_put(self, *, forced: bool) -> None:
        """Return the held connection, clean, whatever state it is in."""
        conn = self.connection
        raw = self._lease_raw
        state = self._lease_state
        adapter = self._lease_adapter
        assert adapter is not None and state is not None
        dirty = self._lease_dirty
        if forced and self._lease_cursors:
            # A server-side cursor WITH HOLD may still be open on the session.
            dirty = dirty or "open cursor"
        counters = self._lease_counters
        if forced:
            counters.forced_releases += 1
        # The box keeps the connection until putconn() is done: if an
        # asynchronous exception cuts this short, the task bracket finds it.
        box = self._lease_box
        # Cursors of this borrow see the generation change and stop using it.
        self._lease_gen += 1
        self.connection = None
        self._lease_raw = None
        self._lease_state = None
        self._lease_cursors = 0
        self._lease_sticky = False
        self._lease_dirty = None
        self._lease_site = None
        counters.releases += 1
        now = monotonic()
        counters.use_us += (now - self._lease_acquired_at) * 1e6
        if dirty is None and raw.autocommit and raw.pgconn.transaction_status == _IDLE:
            # The common case: clean, idle (hence not broken), in autocommit.
            state.returned_at = now
            lane = adapter.lane
            if now - state.lent_at < PARK_MAX and not lane.waiting:
                # Handed to the longest-waiting borrower, or parked for the
                # next one (see _lane.py).
                if lane.queue and lane.hand(conn, box):
                    return
                # No interpreter check point separates these two lines: an
                # asynchronous exception lands before both or after both.
                box.conn = None
                lane.parked.append(conn)
                if lane.waiting or lane.queue or lane.sweeper_idle:
                    lane.after_park()
                return
            adapter.putconn(conn)
            box.conn = None
            return
        try:
            if not raw.closed:
                status = raw.pgconn.transaction_status
                if status in _INTRANS_OR_ERROR:
                    raw.rollback()
                elif status != _IDLE:
                    # Mid-query or unknown: no safe way back.
                    raw.close()
            if not raw.closed:
                if dirty is not None:
                    counters.resets += 1
                    logger.debug("alias %r: resetting session (%s)", self.alias, dirty)
                    _session.discard_session(raw)
                    # DISCARD ALL undid the set-up too: redo it (and tell
                    # connection_created receivers) at the next borrow.
                    state.setup_gen = 0
                    state.announced = False
                    state.replayed = None
                elif not raw.autocommit:
                    raw.autocommit = True
        except psycopg.Error as exc:
            logger.warning(
                "alias %r: discarding a connection that could not be cleaned: %s", self.alias, exc
            )
            raw.close()
        finally:
            if raw.closed:
                counters.discards += 1
                adapter.suspect_before = now
            state.returned_at = monotonic()
            adapter.putconn(conn)
            box.conn = None

    # -- session state --------------------------------------------------------

    # Called by the cursors for statements that leave session state: see _session_policy.
    _lease_inspect = _session_policy.react

    def _lease_pin(self) -> None:
        self._lease_pins += 1

    def _lease_unpin(self) -> None:
        self._lease_pins -= 1
        if self._lease_pins == 0 and self.connection is not None:
            # Whatever ran in the block may have left session state.
            self._lease_dirty = self._lease_dirty or "pinned()"
            self._lease_maybe_release()

    def _lease_forget_after_fork(self) -> list[Any]:
        """In a fork child: drop the inherited connection without touching it."""
        inherited = [self.connection]
        self.connection = None
        self._lease_raw = None
        self._lease_state = None
        self._lease_box.conn = None
        self._lease_cursors = 0
        self._lease_sticky = False
        self._lease_dirty = None
        self._lease_gen += 1
        self._lease_adapter = None
        self._lease_settings = None
        if self.in_atomic_block:
            # The parent's transaction is not the child's: fail the block loudly.
            self.closed_in_transaction = True
            self.needs_rollback = True
        return inherited

    # -- inspection (brackets, telemetry, tests) -----------------------------

    def lease_holders(self) -> dict[str, Any]:
        """What currently keeps this wrapper's connection (empty: released)."""
        if self.connection is None:
            return {}
        holders: dict[str, Any] = {}
        if self._lease_cursors:
            holders["cursors"] = self._lease_cursors
        if self._lease_pins:
            holders["pinned"] = self._lease_pins
        if self._lease_sticky:
            holders["session_state"] = self._lease_dirty
        if self.in_atomic_block:
            holders["atomic"] = len(self.atomic_blocks)
        if not self.autocommit:
            holders["autocommit_off"] = True
        raw = self._lease_raw
        if raw is not None and not raw.closed and raw.pgconn.transaction_status != _IDLE:
            holders["server_transaction"] = TransactionStatus(raw.pgconn.transaction_status).name
        if not holders:
            holders["unreleased"] = True
        return holders
