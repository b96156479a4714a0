"""This process's connection supplies, one per alias, for both engines; and
its live wrappers.

An engine makes an alias's pool, its adapter and its
:class:`~django_pg_real_pool._supply.Supply` once (:func:`get_or_create`);
closing goes through :func:`close` / :func:`close_all` only, so that a pool is
always closed the same way (``Supply.close``). Consulted when a wrapper first
borrows, when a pool is replaced or closed, and at fork: never per query
(each wrapper keeps its supply).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _counters, _strays
from ._supply import Supply
from ._waiters import HeldBox

if TYPE_CHECKING:
    from ._lease import LeaseMixin

logger = logging.getLogger("django_pg_real_pool")


# Guards _supplies' writes (reads are single dict lookups, atomic).
_lock = threading.Lock()
_supplies: dict[str, Supply] = {}


def get(alias: str) -> Supply | None:
    """``alias``'s supply, if this process made one."""
    return _supplies.get(alias)


def supplies() -> list[Supply]:
    """Every supply of this process."""
    return list(_supplies.values())


def get_or_create(
    alias: str, create: Callable[[], Supply], valid: Callable[[Supply], bool] | None = None
) -> Supply:
    """``alias``'s supply, made by ``create()`` (under the registry's lock: one
    pool and one supply per alias, whichever thread gets here first) if there
    is none, or if ``valid`` rejects the one there (its engine replaced the
    pool itself: the old supply then discards what is parked)."""
    supply = _supplies.get(alias)
    if supply is not None and (valid is None or valid(supply)):
        return supply
    with _lock:
        stale = supply = _supplies.get(alias)
        if supply is None or (valid is not None and not valid(supply)):
            supply = _supplies[alias] = create()
        else:
            stale = None
    if stale is not None:
        stale.close(discard=True, pool=False)
    return supply


def close(alias: str) -> None:
    """Close ``alias``'s pool; the next borrow makes a new one."""
    with _lock:
        supply = _supplies.pop(alias, None)
    if supply is not None:
        supply.close()


def close_all() -> None:
    """Close every pool of this process (a failure is logged, the rest closed)."""
    with _lock:
        closing = list(_supplies.items())
        _supplies.clear()
    for alias, supply in closing:
        try:
            supply.close()
        except Exception:
            logger.exception("django_pg_real_pool could not close the pool of %r", alias)


# -- live wrappers ------------------------------------------------------------

_wrappers_lock = threading.Lock()
_wrappers: weakref.WeakSet[LeaseMixin] = weakref.WeakSet()


def register(wrapper: LeaseMixin, counters: _counters.LeaseCounters) -> HeldBox:
    """Track a live wrapper (fork handling, statistics); return its box."""
    box = HeldBox()
    with _wrappers_lock:
        _wrappers.add(wrapper)
    _counters.fold_some()
    weakref.finalize(wrapper, _retire, wrapper.alias, counters, box)
    return box


def _retire(alias: str, counters: _counters.LeaseCounters, box: HeldBox) -> None:
    # Runs wherever GC runs: no locks here, only atomic list appends.
    if box.conn is not None and box.supply is not None:
        _strays.orphans.append((box.supply, box.conn))
    _counters.retire(alias, counters)


def wrappers() -> list[LeaseMixin]:
    """All live wrappers of this process (any thread)."""
    with _wrappers_lock:
        return list(_wrappers)


def forget_after_fork() -> list[Any]:
    """In a fork child: forget every inherited pool and held connection
    without touching them; return them (the caller keeps them unfinalized)."""
    global _lock, _wrappers_lock
    # Another thread may have held these at the fork: it does not exist here.
    _lock = threading.Lock()
    _wrappers_lock = threading.Lock()
    _strays.forget_after_fork()
    inherited: list[Any] = [supply.adapter.pool for supply in _supplies.values()]
    _supplies.clear()
    for wrapper in list(_wrappers):
        inherited.extend(wrapper.forget_after_fork())
    return inherited
