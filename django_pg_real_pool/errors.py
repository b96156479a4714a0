"""Exceptions raised by django_pg_real_pool.

Each one subclasses the Django error that existing handlers already catch, so
code written for the stock backend keeps working.
"""

from __future__ import annotations

from django.db.utils import DatabaseError, OperationalError, ProgrammingError


class PoolExhausted(OperationalError):
    """No pooled connection became free within the pool's timeout.

    A ``django.db.OperationalError``, as with the stock pool; the message names
    the alias, the pool size and the timeout. Chained from the pool's own error.
    """


class SessionStateError(ProgrammingError):
    """A statement would leave session state on a connection shared by others.

    Raised only with ``OPTIONS["real_pool"]["session_state"] = "error"``; wrap
    the code in :func:`django_pg_real_pool.pinned` to keep one connection.
    """


class LeakedConnection(ProgrammingError):
    """A task or test ended holding a connection, a transaction or session state.

    Raised by the strict modes of the task brackets and the pytest plugin.
    """


class SessionContextError(DatabaseError):
    """A connection could not be given the borrower's session context.

    Raised by the query that borrowed it (or by entering or leaving a
    ``session_context`` block on a held connection); the message names the
    alias and the values. A borrowed connection is discarded first: no query
    runs with another borrower's values or without the ones asked for.
    Chained from the server's error (an unknown role, an invalid value).
    """
