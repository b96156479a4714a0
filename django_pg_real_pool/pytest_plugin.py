"""pytest plugin: fail a test that leaves a connection behind.

Opt in with one of:

* the command-line flag ``--pg-real-pool-leaks``,
* the ini option ``pg_real_pool_leaks = true``,
* the environment variable ``DJANGO_PG_REAL_POOL_PYTEST_LEAKS=1``.

Each alias the test's thread uses is looked at twice:

* when the test function returns, against its state when the test function
  started (so the ``atomic()`` that pytest-django or a fixture opened is
  expected): a cursor not closed, an ``atomic()`` or ``pinned()`` block not
  exited, autocommit left off, a transaction opened with raw SQL, session
  state set outside ``pinned()``, a ``session_context()`` entered and never
  exited (later tests would run with its tenant). Looking only after teardown would miss most
  of these: Django's ``TransactionTestCase`` teardown (pytest-django's
  ``transaction=True``) closes every connection, which hides them;
* after every fixture is torn down (pytest-django's rollback or flush
  included): what fixtures left. The class-wide ``atomic()`` of a
  ``django.test.TestCase`` class is expected between its tests.

Either finding errors the test at teardown, naming the alias, what holds it
and the stack that borrowed the connection; the alias is then repaired
(rolled back, connection returned and reset) so later tests start clean.

While opted in, the engine records the borrowing stack of every connection
(as ``leak_threshold`` does; some tens of µs per borrow) on aliases that do
not already set ``leak_threshold``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import traceback
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import _pytest
import pluggy
import pytest

from . import _context

if TYPE_CHECKING:
    from ._lease import LeaseMixin

INI_OPTION = "pg_real_pool_leaks"
FLAG = "--pg-real-pool-leaks"
ENV_VAR = "DJANGO_PG_REAL_POOL_PYTEST_LEAKS"
_GUARD_NAME = "django_pg_real_pool-leak-guard"
_TRUE = ("1", "true", "yes", "on")
# Frames of the test runner itself, left out of acquisition stacks.
_RUNNER_DIRS = tuple(
    os.path.dirname(module.__file__ or "") + os.sep for module in (_pytest, pluggy)
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("django_pg_real_pool")
    group.addoption(
        FLAG,
        action="store_true",
        default=False,
        dest=INI_OPTION,
        help="fail tests that end holding a django_pg_real_pool connection, an open "
        "transaction or a dirty session",
    )
    parser.addini(INI_OPTION, type="bool", default=False, help="same as --pg-real-pool-leaks")


def is_enabled(config: pytest.Config) -> bool:
    """Whether the flag, the ini option or the environment variable asks for the guard."""
    return bool(
        config.getoption(INI_OPTION)
        or config.getini(INI_OPTION)
        or os.environ.get(ENV_VAR, "").strip().lower() in _TRUE
    )


def pytest_configure(config: pytest.Config) -> None:
    # Off: nothing else is registered, no hook runs per test.
    if is_enabled(config):
        config.pluginmanager.register(LeakGuard(), _GUARD_NAME)


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one test left on one alias."""

    problems: tuple[str, ...]
    #: Formatted stack of the borrow (None: no connection held, or not captured).
    acquired_at: str | None


@dataclasses.dataclass(frozen=True)
class _State:
    """The parts of a wrapper's state a test may change."""

    depth: int
    pins: int
    cursors: int
    sticky: bool
    autocommit: bool
    held: bool

    @property
    def is_rest(self) -> bool:
        return not (self.depth or self.pins or self.cursors or self.sticky or self.held)


_AT_REST = _State(0, 0, 0, False, True, False)


class LeakGuard:
    """The per-test checks, registered only when opted in."""

    def __init__(self) -> None:
        self._sites_requested = False
        self._found: dict[str, Finding] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Before the first fixture opens a connection (Django is configured by now).
        if not self._sites_requested:
            self._sites_requested = True
            request_acquisition_sites()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        before = {w.alias: _state_of(w) for w in _wrappers()}
        context = _context.snapshot()
        try:
            return (yield)
        finally:
            self._found = check_test_body(before, context)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        found, self._found = self._found, {}
        try:
            result = yield
        except BaseException as exc:
            # Teardown failed on its own: still leave the next test a clean
            # thread, and say so next to the original error.
            found = {**check_after_teardown(), **found}
            if found and hasattr(exc, "add_note"):
                exc.add_note(describe(item, found))
            raise
        found = {**check_after_teardown(), **found}
        if found:
            pytest.fail(describe(item, found), pytrace=False)
        return result


def _wrappers() -> list[LeaseMixin]:
    from django.conf import settings

    if not settings.configured:
        return []
    from django.db import connections

    from ._lease import LeaseMixin

    return [w for w in connections.all(initialized_only=True) if isinstance(w, LeaseMixin)]


def _state_of(wrapper: LeaseMixin) -> _State:
    held = wrapper.holders()
    return _State(
        depth=len(wrapper.atomic_blocks),
        pins=wrapper.lease_pins(),
        cursors=held.get("cursors", 0),
        sticky="session_state" in held,
        autocommit=wrapper.autocommit or wrapper.connection is None,
        held=wrapper.connection is not None,
    )


def _site(wrapper: LeaseMixin) -> str | None:
    """The borrowing stack without pytest's and pluggy's own frames."""
    site = wrapper.lease_site()
    if not site:
        return None
    frames = [f for f in site if not f.filename.startswith(_RUNNER_DIRS)]
    return "".join(traceback.format_list(frames or site))


def check_test_body(before: dict[str, _State], context: Any = None) -> dict[str, Finding]:
    """What the test function added to each alias since it started, and a
    ``session_context`` it left entered (``context``: the one it started in).

    Undone at once down to the starting state, so that fixture teardown (a
    flush, a rollback) runs on the connection it expects, and later tests do
    not run with the test's tenant.
    """
    left = _context.restore(context)
    found: dict[str, Finding] = {}
    for wrapper in _wrappers():
        base = before.get(wrapper.alias, _AT_REST)
        problems = _added(wrapper, base)
        if wrapper.alias in left:
            problems.append(left.pop(wrapper.alias))
        if not problems:
            continue
        found[wrapper.alias] = Finding(tuple(problems), _site(wrapper))
        wrapper.lease_count_leak()
        _undo(wrapper, base)
    # Aliases this thread has no wrapper of (a context entered, never used).
    found.update((alias, Finding((problem,), None)) for alias, problem in left.items())
    return found


def _added(wrapper: LeaseMixin, base: _State) -> list[str]:
    problems: list[str] = []
    depth = len(wrapper.atomic_blocks)
    if depth > base.depth:
        problems.append(f"atomic() block still open ({depth - base.depth} level(s))")
    pins = wrapper.lease_pins()
    if pins > base.pins:
        problems.append(f"pinned() block not exited ({pins - base.pins} level(s))")
    held = wrapper.holders()
    if not held:
        return problems
    cursors = held.get("cursors", 0)
    if cursors > base.cursors:
        problems.append(f"{cursors - base.cursors} cursor(s) not closed")
    if base.autocommit and not wrapper.autocommit and not wrapper.in_atomic_block:
        problems.append("autocommit left off (manual transaction)")
    if not wrapper.in_atomic_block and wrapper.autocommit and "server_transaction" in held:
        problems.append(f"transaction opened with SQL still open ({held['server_transaction']})")
    if "session_state" in held and not base.sticky:
        problems.append(f"session state set outside pinned() ({held['session_state']})")
    return problems


def _undo(wrapper: LeaseMixin, base: _State) -> None:
    from . import _bracket

    if base.is_rest:
        _bracket.repair(wrapper)
        return
    # Inside a fixture's or pytest-django's atomic(): roll back what the test
    # added, through Django's own exits, so the outer blocks stay usable.
    try:
        while len(wrapper.atomic_blocks) > base.depth:
            wrapper.needs_rollback = True
            wrapper.atomic_blocks[-1].__exit__(None, None, None)
        while wrapper.lease_pins() > base.pins:
            wrapper.lease_unpin()
        if base.autocommit and not wrapper.autocommit and not wrapper.in_atomic_block:
            wrapper.rollback()
            wrapper.set_autocommit(True)
        if "session_state" in wrapper.holders() and not base.sticky:
            # Stays held by the outer blocks; reset (DISCARD ALL) when returned.
            wrapper.lease_unstick()
    except Exception:
        # The outer blocks are beyond saving: start from scratch.
        _bracket.repair(wrapper)


def check_after_teardown() -> dict[str, Finding]:
    """What fixtures left once torn down; each alias is repaired."""
    from . import _bracket

    found: dict[str, Finding] = {}
    for wrapper in _wrappers():
        site = _site(wrapper)
        # TestCase atomics still open now are a TestCase class's own.
        kept = 0
        for block in wrapper.atomic_blocks:
            if not getattr(block, "_from_testcase", False):
                break
            kept += 1
        if kept:
            # Cursors left inside it were reported when the test returned;
            # they go back with the connection at the class's end.
            base = _State(kept, 0, wrapper.holders().get("cursors", 0), False, True, True)
            problems = _added(wrapper, base)
            if problems:
                _undo(wrapper, base)
        else:
            problems = _bracket.inspect(wrapper)
            if problems or wrapper.connection is not None:
                # Also a connection nothing holds (a bare ensure_connection(),
                # as Django's test database set-up does): not a leak, but the
                # next test starts without it.
                _bracket.repair(wrapper)
        if problems:
            wrapper.lease_count_leak()
            found[wrapper.alias] = Finding(tuple(problems), site)
    return found


def request_acquisition_sites() -> None:
    """Make the engine record where each connection is borrowed.

    Aliases without ``leak_threshold`` get an infinite one: the stack is
    captured, the leak detector never fires. Wrappers already set up in this
    thread pick it up at their next borrow.
    """
    from django.conf import settings

    if not settings.configured:
        return
    from django.db import connections

    from ._engines import pool_kind
    from ._settings import OPTIONS_KEY

    for settings_dict in connections.settings.values():
        if pool_kind(settings_dict) is None:
            continue
        options = settings_dict.setdefault("OPTIONS", {})
        ours = options.get(OPTIONS_KEY) or {}
        if ours.get("leak_threshold") is None:
            options[OPTIONS_KEY] = {**ours, "leak_threshold": math.inf}
    for wrapper in _wrappers():
        if wrapper.connection is None:
            # Re-read at the next borrow (as after close_pool()).
            wrapper.lease_forget_settings()


def describe(item: pytest.Item, found: dict[str, Finding]) -> str:
    lines = [f"django_pg_real_pool: {item.nodeid} left database connections behind:"]
    for alias, finding in found.items():
        lines.append(f"  alias {alias!r}: {'; '.join(finding.problems)}.")
        if finding.acquired_at:
            lines.append("  Connection acquired at:")
            lines.extend("  " + line for line in finding.acquired_at.rstrip().splitlines())
        else:
            lines.append("  (no acquisition stack: no connection held, or not captured)")
    lines.append(
        "Cleaned up: rolled back, connection returned to the pool and reset. Close "
        "cursors, exit atomic()/pinned() blocks, and keep session state inside pinned()."
    )
    return "\n".join(lines)
