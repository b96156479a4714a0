"""This process's pools, one per alias, for both engines; and its live wrappers.

An engine makes an alias's pool and its adapter once (:func:`get_or_create`);
closing goes through :func:`close` / :func:`close_all` only, so that a pool is
always closed the same way: its lane first (parked connections go back,
queued borrowers are woken), then the pool, then its configure callback is
cut loose from the wrapper that created it. Consulted when a wrapper first
borrows, when a pool is replaced or closed, and at fork: never per query
(each wrapper keeps its adapter).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import _counters

if TYPE_CHECKING:
    from ._lease import LeaseMixin
    from ._pools import PoolAdapter

logger = logging.getLogger("django_pg_real_pool")


class Configure(Protocol):
    """A pool's callback that reaches back to a wrapper (see ``base._Configure``)."""

    def detach(self) -> None:
        """Let go of the wrapper: the pool is closed."""


class Entry:
    """One alias's pool as its engine made it."""

    __slots__ = ("adapter", "configure", "engine")

    def __init__(self, engine: str, adapter: PoolAdapter, configure: Configure | None = None):
        #: The ``ENGINE`` setting that made the pool (telemetry names it).
        self.engine = engine
        #: The lease's interface to the pool; ``adapter.pool`` is the pool.
        self.adapter = adapter
        self.configure = configure

    def close(self) -> None:
        """Lane, pool, then callback (the one way a pool is closed)."""
        try:
            self.adapter.close()
        finally:
            if self.configure is not None:
                self.configure.detach()


# Guards _entries' writes (reads are single dict lookups, atomic).
_lock = threading.Lock()
_entries: dict[str, Entry] = {}


def get(alias: str) -> Entry | None:
    """``alias``'s pool, if this process made one."""
    return _entries.get(alias)


def entries() -> list[Entry]:
    """Every pool of this process."""
    return list(_entries.values())


def get_or_create(
    alias: str, create: Callable[[], Entry], valid: Callable[[Entry], bool] | None = None
) -> Entry:
    """``alias``'s pool, made by ``create()`` (under the registry's lock: one
    pool and one adapter per alias, whichever thread gets here first) if there
    is none, or if ``valid`` rejects the one there (its engine replaced the
    pool itself: its lane then discards what is parked)."""
    entry = _entries.get(alias)
    if entry is not None and (valid is None or valid(entry)):
        return entry
    with _lock:
        stale = entry = _entries.get(alias)
        if entry is None or (valid is not None and not valid(entry)):
            entry = _entries[alias] = create()
        else:
            stale = None
    if stale is not None:
        stale.adapter.lane.close(discard=True)
    return entry


def close(alias: str) -> None:
    """Close ``alias``'s pool; the next borrow makes a new one."""
    with _lock:
        entry = _entries.pop(alias, None)
    if entry is not None:
        entry.close()


def close_all() -> None:
    """Close every pool of this process (a failure is logged, the rest closed)."""
    with _lock:
        closing = list(_entries.items())
        _entries.clear()
    for alias, entry in closing:
        try:
            entry.close()
        except Exception:
            logger.exception("django_pg_real_pool could not close the pool of %r", alias)


# -- live wrappers ------------------------------------------------------------

_wrappers_lock = threading.Lock()
_wrappers: weakref.WeakSet[LeaseMixin] = weakref.WeakSet()

#: Connections of wrappers that died holding them: returned at the next
#: acquire by any thread. Never from the finalizer itself, which may run inside
#: the pool's critical section (GC can trigger anywhere).
orphans: list[tuple[Any, Any]] = []


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
    """Track a live wrapper (fork handling, statistics); return its box."""
    box = HeldBox()
    with _wrappers_lock:
        _wrappers.add(wrapper)
    _counters.fold_some()
    weakref.finalize(wrapper, _retire, wrapper.alias, wrapper._lease_counters, box)
    return box


def _retire(alias: str, counters: _counters.LeaseCounters, box: HeldBox) -> None:
    # Runs wherever GC runs: no locks here, only atomic list appends.
    if box.conn is not None:
        orphans.append((box.adapter, box.conn))
    _counters.retire(alias, counters)


def wrappers() -> list[LeaseMixin]:
    """All live wrappers of this process (any thread)."""
    with _wrappers_lock:
        return list(_wrappers)


def return_orphans() -> None:
    """Close and return connections whose wrapper died holding them."""
    while orphans:
        try:
            adapter, conn = orphans.pop()
        except IndexError:
            return
        adapter.raw(conn).close()
        adapter.putconn(conn)


def forget_after_fork() -> list[Any]:
    """In a fork child: forget every inherited pool and held connection
    without touching them; return them (the caller keeps them unfinalized)."""
    global _lock, _wrappers_lock
    # Another thread may have held these at the fork: it does not exist here.
    _lock = threading.Lock()
    _wrappers_lock = threading.Lock()
    orphans.clear()
    inherited: list[Any] = [entry.adapter.pool for entry in _entries.values()]
    _entries.clear()
    for wrapper in list(_wrappers):
        inherited.extend(wrapper._lease_forget_after_fork())
    return inherited
