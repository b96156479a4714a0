"""Borrowers waiting in a supply's queue for a release (see ``_supply.py``).

Each borrower has a :class:`HeldBox`: the connection it holds or is being
handed, and a lock it sleeps on while queued. The queue itself (a deque of
boxes) and every decision about it belong to the supply, under its lock;
this module is the sleeping side.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from ._strays import PARK_MAX

if TYPE_CHECKING:
    from ._supply import Supply

#: What :func:`wait` returns when its deadline passed (the box left the queue).
TIMED_OUT: Any = object()


class HeldBox:
    """The connection a wrapper holds (or is being handed), readable after
    the wrapper is gone; ``supply`` is where it goes back."""

    __slots__ = ("conn", "signal", "since", "supply")

    def __init__(self) -> None:
        self.supply: Supply | None = None
        self.conn: Any = None
        #: ``monotonic()`` when ``conn`` was borrowed (``Supply.get``).
        self.since = 0.0
        #: Held while the wrapper waits in a supply's queue; the release that
        #: hands it a connection (or the nudge) releases it. Locked at rest.
        self.signal = threading.Lock()
        self.signal.acquire()


def withdraw(queue: deque[HeldBox], box: HeldBox) -> bool:
    """Take ``box`` out of ``queue`` (under the supply's lock); ``False``: a
    release or a nudge already took it out, and released its signal."""
    try:
        queue.remove(box)
    except ValueError:
        return False
    return True


def wait(
    queue: deque[HeldBox],
    box: HeldBox,
    lock: threading.Lock,
    deadline: float,
    lendable: Callable[[], bool],
) -> Any:
    """Sleep until a release hands ``box`` (queued in ``queue``, guarded by
    ``lock``) its connection, and return it; ``None``: borrow from the pool
    (nudged, or ``lendable()`` says the pool has one); :data:`TIMED_OUT` at
    ``deadline``. The box is out of the queue on return, and on any exception."""
    signal = box.signal
    # A wake-up left over from a wait that an asynchronous exception ended.
    signal.acquire(blocking=False)
    pending = True  # box in the queue, or its wake-up on the way
    try:
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                break
            if signal.acquire(timeout=min(remaining, PARK_MAX)):
                pending = False
                return box.conn  # a hand-over's (stored before the wake-up), or None
            # Nothing for PARK_MAX: ask the pool itself. A nudge that an
            # asynchronous exception cut short (a task's time limit on
            # another thread) must not leave this borrower asleep while the
            # pool has a connection to lend.
            if lendable():
                break
        with lock:
            withdrawn = withdraw(queue, box)
        if withdrawn:
            pending = False
            return TIMED_OUT if remaining <= 0 else None
        # A release or a nudge took this box out under the lock; its wake-up
        # follows (a hand-over's inside that critical section, a nudge's
        # right after it).
        signal.acquire(timeout=PARK_MAX)
        pending = False
        return box.conn
    except BaseException:
        # An asynchronous exception, usually right after the wake-up: a
        # connection handed over stays in the box, where the task bracket or
        # the wrapper's next borrow finds it.
        if pending:
            with lock:
                withdraw(queue, box)
        raise
