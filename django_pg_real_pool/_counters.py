"""Per-wrapper lease counters, and their sums per alias for telemetry.

Each wrapper counts its own borrows and returns (only its thread writes
them); a garbage-collected wrapper's counters are folded into per-alias
totals, so that the sums survive short-lived threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

# Guards _retired (written when counters are folded; read by telemetry).
_lock = threading.Lock()
#: Counters of wrappers that were garbage collected, per alias.
_retired: dict[str, Counter[str]] = {}
_retired_queue: list[tuple[str, LeaseCounters]] = []

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


def retire(alias: str, counters: LeaseCounters) -> None:
    """Keep a dead wrapper's counters (called from its finalizer: wherever
    GC runs, so no lock here, only an atomic list append)."""
    _retired_queue.append((alias, counters))


def fold_some() -> None:
    """Fold retired counters once enough have queued: short-lived threads
    retire wrappers all the time, not only when someone reads the sums."""
    if len(_retired_queue) > 64:
        with _lock:
            _fold_retired()


def _fold_retired() -> None:
    """Move queued counters of dead wrappers into the totals (caller holds _lock)."""
    while _retired_queue:
        alias, counters = _retired_queue.pop()
        _retired.setdefault(alias, Counter()).update(counters.as_dict())


def counters_by_alias() -> dict[str, Counter[str]]:
    """Summed counters of live and retired wrappers, per alias."""
    from . import _registry

    with _lock:
        _fold_retired()
        total = {alias: Counter(c) for alias, c in _retired.items()}
    for wrapper in _registry.wrappers():
        total.setdefault(wrapper.alias, Counter()).update(wrapper.lease_counters().as_dict())
    return total


def forget_after_fork() -> None:
    """In a fork child: a lock another thread held at the fork stays held."""
    global _lock
    _lock = threading.Lock()
