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
``_setup.py``), so a re-borrow is a few attribute writes and
``Supply.get()``; giving back is ``Supply.put()`` (``_supply.py``: parked
connections, queued borrowers, health checks, resets). What holds the
connection, and the verbs other modules use on a wrapper, are in
``_holders.py``.
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

from . import _context, _counters, _leaks, _registry, _replay, _setup
from ._compat import DJANGO_ENSURE_CONNECTION, check_not_async
from ._cursors import (
    LeasedCursorDebugWrapper,
    LeasedCursorWrapper,
    LeasedServerCursorDebugWrapper,
    LeasedServerCursorWrapper,
)
from ._holders import HoldersMixin
from ._pools import ConnState, PoolGone
from ._settings import RealPoolSettings, parse_settings
from ._validate import check_conn_max_age, differs_from_alias, warn_no_pool
from .checks import DatabaseValidation

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper

    from ._supply import Supply

    _Base = PGWrapper
else:
    _Base = object

logger = logging.getLogger("django_pg_real_pool")


class LeaseMixin(HoldersMixin):
    """Release-as-soon-as-possible behaviour for a Django PostgreSQL wrapper.

    Engines provide :meth:`_lease_make_supply`; everything else is shared.
    """

    # `manage.py check --database <alias>` runs this package's checks on the
    # alias, whether or not the app is installed.
    validation_class = DatabaseValidation

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease_supply: Supply | None = None
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
        self.lease_open_cursors = 0
        self._lease_pins = 0
        self._lease_sticky = False
        self._lease_dirty: str | None = None
        self._lease_configuring = False
        # Bumped at every borrow and return: cursors of another borrow see it changed.
        self.lease_generation = 0
        self._lease_acquired_at = 0.0
        self._lease_site: list[traceback.FrameSummary] | None = None
        # Record each borrow's call site (leak_threshold set; see _lease_prepare).
        self._lease_track_site = False
        self._lease_counters = _counters.new_counters()
        self._lease_box = _registry.register(self, self._lease_counters)

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

    def _lease_make_supply(self) -> Supply:
        """Create (or find) this alias's pool and supply; validate its settings."""
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
        # Every borrow checks its connection (Supply.get), as Django skips
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
        self._lease_supply = self._lease_make_supply()
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
        """Borrow a working connection (``Supply.get``), then :meth:`_lease_borrowed`."""
        supply = self._lease_supply
        assert supply is not None
        try:
            conn = supply.get(self._lease_box, self._lease_counters, self._lease_idle_check)
        except PoolGone:
            # close_pool() ran (test set-up, time zone change), or the pool
            # was replaced: the alias has a new pool. Once: a pool closed
            # again at once is someone else's problem to report.
            supply.close(discard=True, pool=False)
            supply = self._lease_supply = self._lease_make_supply()
            conn = supply.get(self._lease_box, self._lease_counters, self._lease_idle_check)
        self._lease_borrowed(conn, conn if supply.raw_is_conn else supply.adapter.raw(conn))

    def _lease_borrowed(self, conn: Any, raw: Any) -> None:
        """The point between "connection borrowed" and the borrower's first
        statement: configure it if needed (once per physical connection),
        hold it, announce it (``connection_created``)."""
        state: ConnState = raw.pgrp_state
        # One integer comparison: set up again only after DISCARD ALL or a
        # change of the database's types (see _setup.py).
        if state.setup_gen != _setup.generation:
            try:
                self._lease_configure(raw)
            except BaseException:
                # Half configured: never reused (the pool replaces it).
                box = self._lease_box
                assert box.supply is not None
                box.supply.discard(box, None)
                raise
        self.connection = conn
        self._lease_raw = raw
        self._lease_state = state
        self.lease_generation += 1
        self._lease_acquired_at = self._lease_box.since
        self._lease_dirty = None
        if self._lease_track_site:
            # Frames of the caller of ensure_connection()/connect() outwards;
            # source lines are read only if the stack is ever printed.
            site = traceback.StackSummary.extract(
                traceback.walk_stack(sys._getframe(4)), limit=30, lookup_lines=False
            )
            site.reverse()
            self._lease_site = site
        if not state.announced:
            state.announced = True
            with self._lease_configuring_block():
                connection_created.send(sender=self.__class__, connection=self)
        # The borrower's session context, before its first statement
        # (_replay.py); inline guard: most apps never set one.
        if _context.current.get() is not None or state.replayed is not None:
            _replay.on_borrow(self, raw, state)

    # -- giving back --------------------------------------------------------

    def _lease_put(self, *, forced: bool) -> None:
        """Return the held connection, clean, whatever state it is in."""
        conn = self.connection
        dirty = self._lease_dirty
        if forced:
            self._lease_counters.forced_releases += 1
            if self.lease_open_cursors:
                # A server-side cursor WITH HOLD may still be open on the session.
                dirty = dirty or "open cursor"
        # Cursors of this borrow see the generation change and stop using it.
        self.lease_generation += 1
        self.connection = None
        self._lease_raw = None
        self._lease_state = None
        self.lease_open_cursors = 0
        self._lease_sticky = False
        self._lease_dirty = None
        self._lease_site = None
        supply = self._lease_box.supply
        assert supply is not None
        # The box names the connection until the supply is done with it: if
        # an asynchronous exception cuts this short, the task bracket finds it.
        supply.put(conn, self._lease_box, dirty, self._lease_counters)
