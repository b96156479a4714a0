"""The task bracket shared by the dramatiq middleware and the Celery handlers.

At the start and the end of every task, each alias the current thread has
used is checked: an open transaction is rolled back, a held or pinned
connection goes back to the pool (reset if it carries session state), a
wrapper stuck in a half-exited ``atomic()`` is made usable again. What the
task leaked is logged as ONE error record per alias, naming the task, and
counted. Queue adapters and :func:`django_pg_real_pool.task_scope` only
map their hooks onto :func:`begin`, :func:`end`, :func:`release_thread` and
:func:`close_pools`; strict mode is resolved by :func:`resolve_strict` and
fails a task with :func:`leaked_error`, the same for every adapter.

The code here must survive the worst landing points of asynchronous
exceptions (dramatiq's ``TimeLimit``/``Shutdown``, Celery's soft time limit):
it repairs from any combination of Django's transaction flags.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import traceback
from typing import TYPE_CHECKING, Any

from . import _context, _registry

if TYPE_CHECKING:
    from ._lease import LeaseMixin
    from .errors import LeakedConnection

logger = logging.getLogger("django_pg_real_pool.bracket")


#: Django setting: strict mode wherever an adapter is not told (default False).
STRICT_SETTING = "REAL_POOL_STRICT"

# Per thread: the label of the task whose bracket is open (between begin()
# and end()), so that a task_scope() inside it does not repair the task's
# own transaction at its entry.
_current = threading.local()


@dataclasses.dataclass(frozen=True)
class Leak:
    """What one task left behind on one alias."""

    alias: str
    problems: tuple[str, ...]
    #: Where the connection was borrowed (only with ``leak_threshold`` set).
    acquired_at: str | None = None

    def describe(self) -> str:
        return "; ".join(self.problems)


def _wrappers_of_this_thread() -> list[LeaseMixin]:
    from django.db import connections

    from ._lease import LeaseMixin

    return [w for w in connections.all(initialized_only=True) if isinstance(w, LeaseMixin)]


def inspect(wrapper: LeaseMixin) -> list[str]:
    """What holds or taints ``wrapper``, as a user would name it (empty: clean)."""
    problems: list[str] = []
    held = wrapper.holders()
    if wrapper.in_atomic_block or wrapper.atomic_blocks:
        problems.append("atomic() block still open")
    if not wrapper.autocommit and not wrapper.in_atomic_block:
        # Also after a close(): the mode outlives the connection.
        problems.append("autocommit left off (manual transaction)")
    if "server_transaction" in held:
        problems.append(f"transaction open on the server ({held['server_transaction']})")
    if "cursors" in held:
        problems.append(f"{held['cursors']} cursor(s) not closed")
    if "session_state" in held:
        problems.append(f"session state set outside pinned() ({held['session_state']})")
    pins = wrapper.lease_pins()
    if pins:
        problems.append(f"pinned() block not exited ({pins} level(s))")
    if wrapper.needs_rollback and not wrapper.in_atomic_block:
        problems.append("transaction flags left broken (needs_rollback)")
    if wrapper.closed_in_transaction and not wrapper.in_atomic_block:
        problems.append("transaction flags left broken (closed_in_transaction)")
    if wrapper.lease_interrupted():
        problems.append("connection hand-over to or from the pool interrupted")
    return problems


def repair(wrapper: LeaseMixin) -> None:
    """Bring ``wrapper`` back to released, autocommit, no transaction.

    Rolls back, returns (or discards) the connection, resets Django's
    transaction flags. Idempotent; safe on a wrapper in any state.
    """
    wrapper.atomic_blocks = []
    wrapper.savepoint_ids = []
    wrapper.in_atomic_block = False
    wrapper.commit_on_exit = True
    wrapper.needs_rollback = False
    wrapper.closed_in_transaction = False
    wrapper.run_on_commit = []
    wrapper.run_commit_hooks_on_set_autocommit_on = False
    wrapper.lease_reset()
    wrapper.autocommit = bool(wrapper.settings_dict["AUTOCOMMIT"])


def _site(wrapper: LeaseMixin) -> str | None:
    site = wrapper.lease_site()
    return "".join(traceback.format_list(site)) if site else None


def check_and_repair(label: str, task_id: str | None, *, phase: str) -> list[Leak]:
    """Check every alias of this thread, repair it, log one error per leak.

    ``phase`` says when ("at task end", "before task start", ...). Never
    raises for a repair failure (logged instead): a bug here must not kill a
    worker thread.
    """
    leaks: list[Leak] = []
    for wrapper in _wrappers_of_this_thread():
        try:
            problems = inspect(wrapper)
            site = _site(wrapper)
            repair(wrapper)
        except Exception:
            logger.exception(
                "django_pg_real_pool could not repair alias %r %s of %s",
                wrapper.alias,
                phase,
                label,
            )
            continue
        if not problems:
            continue
        leak = Leak(wrapper.alias, tuple(problems), site)
        leaks.append(leak)
        wrapper.lease_count_leak()
        logger.error(
            "%s (id %s) leaked on database alias %r %s: %s. Cleaned up: rolled back, "
            "connection returned to the pool.%s",
            label,
            task_id or "-",
            wrapper.alias,
            phase,
            leak.describe(),
            f" Connection acquired at:\n{site}" if site else "",
            extra={
                "pgrp_task": label,
                "pgrp_task_id": task_id,
                "pgrp_alias": wrapper.alias,
                "pgrp_problems": list(problems),
            },
        )
    return leaks


def begin(label: str, task_id: str | None) -> list[Leak]:
    """At task start: the thread must be clean; clean and report if not.

    Marks the thread as inside ``label``'s bracket until :func:`end`, and
    remembers the session context (``_context.py``) the task starts in.
    """
    leaks = check_and_repair(label, task_id, phase="before the task started (left by earlier code)")
    _current.label = label
    _current.context = _context.snapshot()
    return leaks


def end(label: str, task_id: str | None) -> list[Leak]:
    """At task end (every exit): check, repair, report. Safe to repeat.

    The session context goes back to what the task started in: what the
    replay option recorded ends silently (as at ``close()``); a
    ``session_context`` block entered and never exited is a leak.
    """
    # Cleared first: an asynchronous exception in the check must not leave
    # the thread marked as inside a task for good.
    _current.label = None
    before = getattr(_current, "context", None)
    _current.context = None
    leaks = check_and_repair(label, task_id, phase="at task end")
    return _context_leaks(label, task_id, before, leaks)


def _context_leaks(label: str, task_id: str | None, before: Any, leaks: list[Leak]) -> list[Leak]:
    """Restore the session context to ``before``; add what was left entered."""
    left = _context.restore(before)
    if not left:
        return leaks
    by_alias = {leak.alias: leak for leak in leaks}
    for alias, problem in left.items():
        logger.error(
            "%s (id %s) leaked on database alias %r at task end: %s. Cleaned up: the next "
            "task starts without it.",
            label,
            task_id or "-",
            alias,
            problem,
            extra={
                "pgrp_task": label,
                "pgrp_task_id": task_id,
                "pgrp_alias": alias,
                "pgrp_problems": [problem],
            },
        )
        found = by_alias.get(alias)
        by_alias[alias] = dataclasses.replace(
            found or Leak(alias, ()), problems=(*(found.problems if found else ()), problem)
        )
        if found is None:
            _count_leak(alias)
    return list(by_alias.values())


def _count_leak(alias: str) -> None:
    from django.db import connections

    from ._lease import LeaseMixin

    wrapper = connections[alias]
    if isinstance(wrapper, LeaseMixin):
        wrapper.lease_count_leak()


def current_task() -> str | None:
    """The label of the task whose bracket is open on this thread, if any."""
    label: str | None = getattr(_current, "label", None)
    return label


def resolve_strict(explicit: bool | None) -> bool:
    """Strict mode: ``explicit`` when given, else the ``REAL_POOL_STRICT`` setting."""
    if explicit is not None:
        return explicit
    from django.conf import settings

    return bool(getattr(settings, STRICT_SETTING, False))


def leaked_error(label: str, task_id: str | None, leaks: list[Leak]) -> LeakedConnection:
    """The exception strict mode fails a task with, naming every leaking alias."""
    from .errors import LeakedConnection

    what = "; ".join(f"alias {leak.alias!r}: {leak.describe()}" for leak in leaks)
    return LeakedConnection(
        f"{label} (id {task_id or '-'}) ended holding database state ({what}). It was cleaned "
        "up (rolled back, connection returned to the pool); strict mode fails the task. "
        "Close cursors, end transactions and pinned() blocks inside the task."
    )


def release_thread(label: str) -> list[Leak]:
    """Before a worker thread stops: return everything it holds."""
    _current.label = None
    _current.context = None
    _context.restore(None)
    return check_and_repair(label, None, phase="at thread shutdown")


def close_pools() -> None:
    """At worker shutdown: close every pool of this process (idle sessions end)."""
    for wrapper in _wrappers_of_this_thread():
        try:
            repair(wrapper)
            wrapper.close_pool()
        except Exception:
            logger.exception("django_pg_real_pool could not close the pool of %r", wrapper.alias)
    # Pools of aliases this thread never touched (other threads used them),
    # closed as close_pool() closes them.
    _registry.close_all()


def wrappers_snapshot() -> dict[str, dict[str, Any]]:
    """Holders of every live wrapper of the process (for status output)."""
    return {f"{w.alias}@{id(w):x}": w.lease_holders() for w in _registry.wrappers()}
