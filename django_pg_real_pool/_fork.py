"""Fork safety: a child process forgets what it inherited.

After ``fork()`` the child inherits the parent's pools: their sockets, their
locks (possibly held by a thread that does not exist in the child) and their
worker threads (which do not exist either). The child must never use or close
them: closing sends a Terminate message on a socket the parent still uses.
``os.register_at_fork`` therefore makes the child forget every inherited pool
and connection without touching it, and start with empty pools.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

import psycopg

from . import _counters, _registry

#: Inherited objects a child process must neither use nor let be finalized
#: (finalizing a psycopg connection closes its socket cleanly, which ends the
#: parent's session). Kept for the child's lifetime.
_graveyard: list[Any] = []

#: Every physical connection this process opened (for fork disarming).
_connections: weakref.WeakSet[Any] = weakref.WeakSet()

#: Extra callbacks run in the child after fork: a third-party pool registry
#: to forget (django-db-connection-pool's ``pool_container``).
_child_hooks: list[Callable[[], list[Any]]] = []


def track_connection(conn: Any) -> None:
    """Remember a physical connection so that a fork child can disarm it."""
    _connections.add(conn)


def _disarm_inherited_connections() -> None:
    # Finalizing a psycopg connection sends a Terminate message and closes its
    # socket: from a child, that would end the parent's session. Pointing the
    # child's copy of the descriptor at /dev/null makes that write fail
    # harmlessly; the parent's socket is untouched (separate fd tables).
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in list(_connections):
            try:
                fd = conn.pgconn.socket
            except psycopg.OperationalError:  # already closed: nothing to disarm
                continue
            os.dup2(devnull, fd)
            _graveyard.append(conn)
    finally:
        os.close(devnull)
    _connections.clear()


def _after_fork_in_child() -> None:
    # Nothing here may block or talk to the server: other threads' locks may
    # be held forever in the child.
    _counters.forget_after_fork()
    _disarm_inherited_connections()
    _graveyard.extend(_registry.forget_after_fork())
    for hook in _child_hooks:
        _graveyard.extend(hook())


os.register_at_fork(after_in_child=_after_fork_in_child)
