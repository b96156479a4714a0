"""A writer that turns read-only: a managed database's failover.

When a cluster fails over, the old writer is demoted (it restarts as a
replica, or is fenced with ``default_transaction_read_only``) while the pool
still holds sessions to it: every write on them fails with SQLSTATE 25006
(``read_only_sql_transaction``) until those sessions are gone, however long the
pool keeps them. Since PostgreSQL 14 the server reports both
``default_transaction_read_only`` and ``in_hot_standby`` to the client
(``ParameterStatus``), at the end of the first statement after the change: the
engine reads them, without a round trip, when a connection goes back to the
pool (at least once a second each, see ``_strays.PARK_MAX``). A connection
that was opened on a writer and now reports read-only is closed and the
alias's pool drained, so new connections are opened, and reach the new writer
(the DNS name the HOST points to, or libpq's multi-host
``target_session_attrs=read-write``).

A connection opened read-only (an alias for a replica) is left alone: only a
change from writer to read-only is a failover.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg.pq.abc import PGconn

logger = logging.getLogger("django_pg_real_pool")

_READ_ONLY = b"default_transaction_read_only"
_STANDBY = b"in_hot_standby"


def is_read_only(pgconn: PGconn) -> bool:
    """What the server last reported: read-only by default, or a standby."""
    status = pgconn.parameter_status
    return status(_READ_ONLY) == b"on" or status(_STANDBY) == b"on"


def close_if_failed_over(raw: Any) -> bool:
    """At a return: close ``raw`` if it was opened on a writer that now reports
    read-only, and say so (the adapter then drains its pool)."""
    if raw.pgrp_state.writer and not raw.closed and is_read_only(raw.pgconn):
        raw.close()
        return True
    return False


def log_drain(alias: str) -> None:
    logger.warning(
        "alias %r: the server turned read-only (failover or fencing of the writer): "
        "draining the pool so new connections reach the writer",
        alias,
    )
