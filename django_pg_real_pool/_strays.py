"""Connections nobody holds that must still go back to their pool: parked
longer than :data:`PARK_MAX` (the sweeper thread), or named by the box of a
wrapper that died holding them (orphans).
"""

from __future__ import annotations

import logging
import threading
import weakref
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._supply import Supply

logger = logging.getLogger("django_pg_real_pool")

#: Longest a connection stays out of the pool between two visits, and longest
#: it stays parked (seconds; see ``_supply.py``).
PARK_MAX = 1.0

#: Seconds between two looks of the sweeper while something is parked.
SWEEP_EVERY = PARK_MAX / 2

#: The sweeper sleeps until a park wakes it (read on every park, without a
#: lock: a stale read only costs one extra :func:`rouse`).
idle = False

#: Connections of wrappers that died holding them, with their supply:
#: returned at the next borrow by any thread. Never from the finalizer itself,
#: which may run inside a pool's critical section (GC can trigger anywhere).
orphans: list[tuple[Supply, Any]] = []


def return_orphans() -> None:
    """Close and return connections whose wrapper died holding them."""
    while orphans:
        try:
            supply, conn = orphans.pop()
        except IndexError:
            return
        supply.discard_conn(conn)


class _Sweeper:
    """One daemon thread per process: returns connections parked too long.

    Without it, connections parked when a process falls idle would stay lent
    out: the pool could not shrink, and its statistics would count them busy.
    It looks every :data:`SWEEP_EVERY` seconds while some supply has a parked
    connection, and sleeps on a condition otherwise (a park wakes it: see
    :data:`idle`). A fork child starts its own at its first supply.
    """

    def __init__(self) -> None:
        self._supplies: weakref.WeakSet[Supply] = weakref.WeakSet()
        # Guards _supplies, _started and the writes of the module's `idle`.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._started = False

    def watch(self, supply: Supply) -> None:
        with self._lock:
            self._supplies.add(supply)
            if not self._started:
                self._started = True
                threading.Thread(
                    target=self._run, name="django_pg_real_pool-lane-sweeper", daemon=True
                ).start()

    def rouse(self) -> None:
        global idle
        with self._lock:
            if idle:
                idle = False
                self._wake.notify()

    def _run(self) -> None:
        global idle
        while True:
            sleep(SWEEP_EVERY)  # a period, not a wait for an event
            self._sweep_all(monotonic())
            with self._lock:
                # Idle first, then look: a park either sees the flag (and
                # wakes this thread, whose wait releases the lock) or happened
                # before the look below.
                idle = True
                if any(supply.has_parked() for supply in list(self._supplies)):
                    idle = False
                    continue
                while idle:
                    self._wake.wait()

    def _sweep_all(self, now: float) -> None:
        # A method of its own: its locals (strong references to supplies)
        # end with it, so a closed supply is freed while the sweeper sleeps.
        with self._lock:
            supplies = list(self._supplies)
        for supply in supplies:
            if supply.has_parked():
                try:
                    supply.sweep(now)
                except Exception:  # never let one bad return end the sweeper
                    logger.exception("giving back a parked connection failed")


_sweeper = _Sweeper()


def watch(supply: Supply) -> None:
    """Sweep ``supply`` from now on (the sweeper starts with the first)."""
    _sweeper.watch(supply)


def rouse() -> None:
    """Wake the idle sweeper: something was parked."""
    _sweeper.rouse()


def forget_after_fork() -> None:
    """In a fork child: a new sweeper (threads do not survive fork, and the
    inherited lock may be held); no inherited orphan is touched."""
    global _sweeper, idle
    _sweeper = _Sweeper()
    idle = False
    orphans.clear()
