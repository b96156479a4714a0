"""Django cursor wrappers that count as holders of the connection lease.

A cursor holds the connection from its creation until it is closed (or, for a
client-side cursor, iterated to the end: its rows are then all in memory). A
server-side cursor holds it until closed, whatever the transaction state: its
rows still live on that backend.

After ``connection.close()`` ended the lease under an open cursor, the cursor
refuses to run: its psycopg cursor belongs to a connection that may already
serve another thread, so it is never touched again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db.backends.postgresql.base import CursorDebugWrapper as PGCursorDebugWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import InterfaceError

from ._replay import confirm
from ._session import session_state_of

if TYPE_CHECKING:
    from ._lease import LeaseMixin


class LeasedCursorMixin:
    """Lease bookkeeping for :class:`CursorWrapper` subclasses."""

    cursor: Any
    db: LeaseMixin
    _gen: int
    #: Server-side (named) cursor: holds until closed, its fetches talk to the server.
    _server_side = False

    def __init__(self, cursor: Any, db: LeaseMixin) -> None:
        super().__init__(cursor, db)  # type: ignore[call-arg]
        self._gen = db.lease_generation
        self._holding = True
        self._closed = False
        db.lease_open_cursors += 1

    def _check_usable(self) -> None:
        """Refuse a cursor whose lease ended, or re-borrow for a finished one.

        Callers test the common case inline first (this borrow, still held):
        two attribute reads instead of a call per statement.
        """
        db = self.db
        if self._gen == db.lease_generation and self._holding:
            return
        if self._closed:
            # Explicitly closed: refuse as psycopg does, never borrow again.
            raise InterfaceError("the cursor is closed")
        if self._holding or self._server_side:
            raise InterfaceError(
                "cursor already closed: connection.close() returned its connection to "
                "the pool while this cursor was open"
            )
        # A client-side cursor that let go after its rows were read: borrow
        # again and run on a fresh psycopg cursor (possibly another backend).
        db.ensure_connection()
        with db.wrap_database_errors:
            self.cursor = db.create_cursor()
        self._gen = db.lease_generation
        self._holding = True
        db.lease_open_cursors += 1

    def _let_go(self) -> None:
        """Stop holding the lease (the psycopg cursor is left as it is)."""
        if self._holding:
            self._holding = False
            db = self.db
            if self._gen == db.lease_generation:
                db.lease_open_cursors -= 1
                db._lease_maybe_release()

    def execute(self, sql: Any, params: Any = None) -> Any:
        db = self.db
        if self._gen != db.lease_generation or not self._holding:
            self._check_usable()
        if session_state_of(sql) is not None:
            recorded = db._lease_inspect(sql, params)
            if recorded is not None:
                result = super().execute(sql, params)  # type: ignore[misc]
                # It ran: what it set is on this connection now.
                confirm(db, recorded)
                return result
        return super().execute(sql, params)  # type: ignore[misc]

    def executemany(self, sql: Any, param_list: Any) -> Any:
        db = self.db
        if self._gen != db.lease_generation or not self._holding:
            self._check_usable()
        if session_state_of(sql) is not None:
            db._lease_inspect(sql)
        return super().executemany(sql, param_list)  # type: ignore[misc]

    def callproc(self, procname: Any, params: Any = None, kparams: Any = None) -> Any:
        self._check_usable()
        return super().callproc(procname, params, kparams)  # type: ignore[misc]

    def __iter__(self) -> Iterator[Any]:
        if self._gen != self.db.lease_generation and self._holding:
            self._check_usable()
        with self.db.wrap_database_errors:
            yield from self.cursor
        if not self._server_side:
            self._let_go()

    def close(self) -> None:
        self._closed = True
        db = self.db
        if self._gen != db.lease_generation and self._holding:
            # The lease ended under us: the psycopg cursor is not ours to touch.
            self._holding = False
            return
        try:
            if self._holding or not self._server_side:
                self.cursor.close()
        finally:
            self._let_go()


class ServerSideGuardMixin:
    """For server-side cursors only: their ``fetch*()`` talk to the server.

    Kept off client-side cursors, whose every ``fetchone()`` would pay the
    extra frame for nothing (their rows are already in memory).
    """

    cursor: Any
    db: LeaseMixin
    _gen: int
    _server_side = True

    def __getattr__(self, attr: str) -> Any:
        if self._gen != self.db.lease_generation:
            raise InterfaceError(
                "cursor already closed: connection.close() returned its connection to "
                "the pool while this server-side cursor was open"
            )
        return super().__getattr__(attr)  # type: ignore[misc]


class LeasedCursorWrapper(LeasedCursorMixin, CursorWrapper):
    """``CursorWrapper`` holding the lease while open."""


class LeasedServerCursorWrapper(ServerSideGuardMixin, LeasedCursorWrapper):
    """``CursorWrapper`` of a server-side cursor holding the lease while open."""


class LeasedCursorDebugWrapper(LeasedCursorMixin, PGCursorDebugWrapper):
    """``CursorDebugWrapper`` (``DEBUG``, ``assertNumQueries``) holding the lease."""


class LeasedServerCursorDebugWrapper(ServerSideGuardMixin, LeasedCursorDebugWrapper):
    """``CursorDebugWrapper`` of a server-side cursor holding the lease while open."""

    def copy(self, statement: Any) -> Any:
        self._check_usable()
        return super().copy(statement)
