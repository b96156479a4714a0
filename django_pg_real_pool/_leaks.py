"""Leak detection: connections held outside ``atomic()``/``pinned()`` too long.

With ``OPTIONS["real_pool"]["leak_threshold"] = seconds`` on an alias, a
connection of that alias held longer than the threshold while no
``atomic()`` block and no ``pinned()`` block explains it (an unclosed cursor,
autocommit left off, a raw ``BEGIN``, session state set outside ``pinned()``)
is reported ONCE per borrow, with the stack that borrowed it, as a warning on
the ``django_pg_real_pool.leaks`` logger. Compare HikariCP's
``leakDetectionThreshold``. A report comes within the threshold plus two
scan intervals.

Nothing runs while no alias sets the threshold: no thread exists, and the
engine captures acquisition stacks only for aliases that set it. The first
:func:`watch` starts one daemon thread per process that scans the live
wrappers (``_registry.wrappers()``) every ``threshold / 4`` seconds, bounded to
[``MIN_INTERVAL``, ``MAX_INTERVAL``]; it only reads what the owning threads
write, so borrowing never waits for it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import traceback
import weakref
from collections import Counter
from collections.abc import Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import _registry

if TYPE_CHECKING:
    from ._lease import LeaseMixin

logger = logging.getLogger("django_pg_real_pool.leaks")

#: Bounds of the scan interval (seconds): a report comes at most one interval
#: after the threshold passed.
MIN_INTERVAL = 0.05
MAX_INTERVAL = 5.0

# Guards every module global below (the scanner and borrowing threads).
_lock = threading.Lock()
#: Smallest finite threshold registered per alias (drives the interval).
_thresholds: dict[str, float] = {}
#: Borrow already reported, per wrapper: its generation (``lease_borrow()``) at report time.
_reported: weakref.WeakKeyDictionary[LeaseMixin, int] = weakref.WeakKeyDictionary()
#: Borrow seen past the threshold once, per wrapper: reported if the next
#: scan sees the same borrow (see scan()).
_suspects: weakref.WeakKeyDictionary[LeaseMixin, int] = weakref.WeakKeyDictionary()
#: Reports made, per alias (for telemetry).
_counts: Counter[str] = Counter()
_thread: threading.Thread | None = None
#: Set to stop the current scanner thread (each thread gets its own event).
_stop: threading.Event | None = None
_fork_hook_installed = False


@dataclasses.dataclass(frozen=True)
class LeakReport:
    """One connection held too long."""

    alias: str
    held_for: float
    threshold: float
    thread: str
    holders: dict[str, Any]
    #: Formatted stack of the borrow (None if it was not captured).
    acquired_at: str | None


def watch(alias: str, threshold: float | None) -> None:
    """Make sure the detector runs for ``alias`` (idempotent, cheap).

    Called once per wrapper when its settings are read, and by the app's
    ``ready()``. ``None`` or an infinite threshold (stack capture only, as the
    pytest plugin asks) starts nothing.
    """
    if threshold is None or not math.isfinite(threshold):
        return
    global _thread, _stop
    with _lock:
        current = _thresholds.get(alias)
        if current is None or threshold < current:
            _thresholds[alias] = threshold
        if _thread is not None and _thread.is_alive():
            return
        _install_fork_hook()
        _stop = threading.Event()
        _thread = threading.Thread(
            target=_run, args=(_stop,), name="django_pg_real_pool-leaks", daemon=True
        )
        _thread.start()


def watch_configured() -> None:
    """:func:`watch` every alias whose settings set ``leak_threshold`` (app start-up).

    Invalid values are left to the system check (E005) and to first use.
    """
    from django.conf import settings

    from ._engines import pool_kind
    from ._settings import OPTIONS_KEY

    databases: Mapping[str, Mapping[str, Any]] = settings.DATABASES
    for alias, entry in databases.items():
        if pool_kind(entry) is None:
            continue
        ours = (entry.get("OPTIONS") or {}).get(OPTIONS_KEY) or {}
        threshold = ours.get("leak_threshold") if isinstance(ours, Mapping) else None
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            watch(alias, float(threshold))


def interval() -> float:
    """Seconds between two scans, from the smallest registered threshold."""
    with _lock:
        smallest = min(_thresholds.values(), default=MAX_INTERVAL * 4)
    return min(max(smallest / 4, MIN_INTERVAL), MAX_INTERVAL)


def is_running() -> bool:
    thread = _thread
    return thread is not None and thread.is_alive()


def shutdown(timeout: float = 10.0) -> None:
    """Stop the scanner thread and forget registered thresholds (tests, shutdown)."""
    global _thread, _stop
    with _lock:
        thread, _thread = _thread, None
        if _stop is not None:
            _stop.set()
            _stop = None
        _thresholds.clear()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def reports_by_alias() -> dict[str, int]:
    """Number of leaks reported so far in this process, per alias."""
    with _lock:
        return dict(_counts)


def scan(now: float | None = None) -> list[LeakReport]:
    """Check every live wrapper once; report (log) and return new leaks.

    A borrow is reported when two scans in a row see it past the threshold:
    the owner thread sets ``connection`` a few steps before the new borrow's
    generation and time, and a single look could catch it in between and
    take a fresh borrow for an old one.
    """
    now = monotonic() if now is None else now
    found: list[LeakReport] = []
    names: dict[int | None, str] | None = None
    for wrapper in _registry.wrappers():
        threshold = wrapper.lease_leak_threshold()
        if threshold is None or not math.isfinite(threshold):
            continue
        # Read the borrow's generation first and check it again last: the
        # owner may return and borrow again while we look.
        gen, since = wrapper.lease_borrow()
        held_for = now - since
        if wrapper.connection is None or held_for < threshold:
            continue
        site = wrapper.lease_site()
        holders = wrapper.lease_holders()
        if "atomic" in holders or "pinned" in holders:
            continue
        if gen != wrapper.lease_borrow()[0] or wrapper.connection is None:
            continue
        with _lock:
            if _reported.get(wrapper) == gen:
                continue
            if _suspects.get(wrapper) != gen:
                _suspects[wrapper] = gen
                continue
            del _suspects[wrapper]
            _reported[wrapper] = gen
        if names is None:
            names = {t.ident: t.name for t in threading.enumerate()}
        ident = getattr(wrapper, "_thread_ident", None)
        thread = names.get(ident, f"thread {ident}")
        stack = "".join(traceback.format_list(site)) if site else None
        found.append(LeakReport(wrapper.alias, held_for, threshold, thread, holders, stack))
    for report in found:
        _log(report)
    if found:
        with _lock:
            _counts.update(report.alias for report in found)
    return found


def _log(report: LeakReport) -> None:
    logger.warning(
        "database alias %r: a connection has been held for %.1fs (leak_threshold %gs) "
        "outside atomic()/pinned() by thread %r; held by %s. Close cursors, end manual "
        "transactions, and scope session state with pinned(). %s",
        report.alias,
        report.held_for,
        report.threshold,
        report.thread,
        ", ".join(f"{k}={v}" for k, v in report.holders.items()) or "nothing (returning)",
        f"Acquired at:\n{report.acquired_at}"
        if report.acquired_at
        else "The acquisition stack was not captured.",
        extra={
            "pgrp_alias": report.alias,
            "pgrp_held_seconds": report.held_for,
            "pgrp_holders": report.holders,
            "pgrp_thread": report.thread,
        },
    )


def _run(stop: threading.Event) -> None:
    while not stop.wait(interval()):
        try:
            scan()
        except Exception:
            # A wrapper changed under us in an unforeseen way: log, keep watching.
            logger.exception("django_pg_real_pool leak detector: scan failed")


def _install_fork_hook() -> None:
    # Called under _lock, from watch(): registered only once a detector runs.
    global _fork_hook_installed
    if not _fork_hook_installed:
        _fork_hook_installed = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    # The scanner thread does not exist in the child, and may have held the
    # lock at fork time: start over, and watch the child's own connections.
    global _lock, _thread, _stop
    _lock = threading.Lock()
    _thread = None
    _stop = None
    thresholds = dict(_thresholds)
    _thresholds.clear()
    for alias, threshold in thresholds.items():
        watch(alias, threshold)
