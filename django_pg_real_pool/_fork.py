"""Per-process bookkeeping: live wrappers, their counters, and fork safety.

After ``fork()`` the child inherits the parent's pools: their sockets, their
locks (possibly held by a thread that does not exist in the child) and their
worker threads (which do not exist either). The child must never use or close
them: closing sends a Terminate message on a socket the parent still uses.
``os.register_at_fork`` therefore makes the child forget every inherited pool
and connection without touching it, and start with empty pools.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from ._lease import LeaseMixin

logger = logging.getLogger("django_pg_real_pool")

# Guards _wrappers and _retired (written from every thread that creates or
# drops a wrapper; read by telemetry).
_lock = threading.Lock()
_wrappers: weakref.WeakSet[LeaseMixin] = weakref.WeakSet()
#: Counters of wrappers that were garbage collected, per alias.
_retired: dict[str, Counter[str]] = {}
_retired_queue: list[tuple[str, LeaseCounters]] = []

#: Connections of wrappers that died holding them: returned at the next
#: acquire by any thread. Never from the finalizer itself, which may run inside
#: the pool's critical section (GC can trigger anywhere).
orphans: list[tuple[Any, Any]] = []

#: Inherited objects a child process must neither use nor let be finalized
#: (finalizing a psycopg connection closes its socket cleanly, which ends the
#: parent's session). Kept for the child's lifetime.
_graveyard: list[Any] = []

#: Every physical connection this process opened (for fork disarming).
_connections: weakref.WeakSet[Any] = weakref.WeakSet()

#: Extra callbacks run in the child after fork (engines register their pools).
_child_hooks: list[Callable[[], list[Any]]] = []

COUNTER_KEYS = (
    "acquires",
    "releases",
    "wait_us",
    "use_us",
    "resets",
    "discards",
    "stale",
    "session_pins",
    "forced_releases",
    "pings",
    "leaks",
    "timeouts",
    "queued",
)


class LeaseCounters:
    """One wrapper's counters (only its owning thread writes them).

    Attributes, not a ``Counter``: the borrow and return paths bump four of
    them per query, and a slot increment costs a fifth of a ``Counter`` item's
    (a dict subclass gets none of the interpreter's dict fast paths). Item
    access (``counters["leaks"] += 1``) is kept for the cold paths.
    ``wait_us``/``use_us`` accumulate float microseconds (no ``int()`` per query).
    """

    __slots__ = COUNTER_KEYS

    def __init__(self) -> None:
        for key in COUNTER_KEYS:
            setattr(self, key, 0)

    def __getitem__(self, key: str) -> float:
        value: float = getattr(self, key)
        return value

    def __setitem__(self, key: str, value: float) -> None:
        setattr(self, key, value)

    def as_dict(self) -> dict[str, int]:
        """Whole numbers, as the statistics report them."""
        return {key: round(getattr(self, key)) for key in COUNTER_KEYS}

    # Typed for the hot paths (mypy cannot see slots named by a tuple).
    if TYPE_CHECKING:
        acquires: int
        releases: int
        wait_us: float
        use_us: float
        resets: int
        discards: int
        stale: int
        session_pins: int
        forced_releases: int
        pings: int
        leaks: int
        timeouts: int
        queued: int


def new_counters() -> LeaseCounters:
    """A fresh per-wrapper counter set."""
    return LeaseCounters()


class HeldBox:
    """The connection a wrapper holds, readable after the wrapper is gone."""

    __slots__ = ("adapter", "conn", "signal")

    def __init__(self) -> None:
        self.adapter: Any = None
        self.conn: Any = None
        #: Held while the wrapper waits in a lane's queue; the release that
        #: hands it a connection releases it (see _lane.py). Locked at rest.
        self.signal = threading.Lock()
        self.signal.acquire()


def register(wrapper: LeaseMixin) -> HeldBox:
    """Track a wrapper for fork handling and statistics; return its box."""
    box = HeldBox()
    with _lock:
        _wrappers.add(wrapper)
        # Short-lived threads retire wrappers all the time: fold their counters
        # here too, not only when someone reads the statistics.
        if len(_retired_queue) > 64:
            _fold_retired()
    weakref.finalize(wrapper, _retire, wrapper.alias, wrapper._lease_counters, box)
    return box


def _retire(alias: str, counters: LeaseCounters, box: HeldBox) -> None:
    # Runs wherever GC runs: no locks here, only atomic list appends.
    if box.conn is not None:
        orphans.append((box.adapter, box.conn))
    _retired_queue.append((alias, counters))


def wrappers() -> list[LeaseMixin]:
    """All live wrappers of this process (any thread)."""
    with _lock:
        return list(_wrappers)


def _fold_retired() -> None:
    """Move queued counters of dead wrappers into the totals (caller holds _lock)."""
    while _retired_queue:
        alias, counters = _retired_queue.pop()
        _retired.setdefault(alias, Counter()).update(counters.as_dict())


def counters_by_alias() -> dict[str, Counter[str]]:
    """Summed counters of live and retired wrappers, per alias."""
    with _lock:
        _fold_retired()
        total = {alias: Counter(c) for alias, c in _retired.items()}
        live = list(_wrappers)
    for wrapper in live:
        total.setdefault(wrapper.alias, Counter()).update(wrapper._lease_counters.as_dict())
    return total


def return_orphans() -> None:
    """Close and return connections whose wrapper died holding them."""
    while orphans:
        try:
            adapter, conn = orphans.pop()
        except IndexError:
            return
        adapter.raw(conn).close()
        adapter.putconn(conn)


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
    global _lock
    _lock = threading.Lock()
    orphans.clear()
    _disarm_inherited_connections()
    for hook in _child_hooks:
        _graveyard.extend(hook())
    for wrapper in list(_wrappers):
        _graveyard.extend(wrapper._lease_forget_after_fork())


os.register_at_fork(after_in_child=_after_fork_in_child)
