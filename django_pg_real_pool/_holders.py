"""What holds a wrapper's pooled connection, and the verbs other modules use
on a wrapper instead of its private fields.

:meth:`HoldersMixin.holders` is the one answer to "what keeps this
connection": the release decision (``_lease_maybe_release``), the task
bracket (``_bracket.inspect``), the pytest plugin and the leak detector all
ask it. The ``_lease_*`` fields are the lease's (``_lease.py`` sets them up);
only this module and ``_lease.py`` touch them. Two fields are the cursors'
interface instead, public so that a query pays no method call
(``_cursors.py``): ``lease_open_cursors``, which each cursor increments while
it holds the connection, and ``lease_generation``, which changes at every
borrow and return so that a cursor of an earlier borrow stops.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from psycopg.pq import TransactionStatus

from . import _session_policy
from ._setup import ConnectionSetupMixin

if TYPE_CHECKING:
    from ._counters import LeaseCounters
    from ._pools import ConnState
    from ._replay_sql import ReplayRules
    from ._settings import RealPoolSettings
    from ._supply import Supply
    from ._waiters import HeldBox

_IDLE = TransactionStatus.IDLE


class HoldersMixin(ConnectionSetupMixin):
    """Holder counting and the wrapper's public verbs (see the module)."""

    # Set up by LeaseMixin.__init__.
    _lease_supply: Supply | None
    _lease_enabled: bool
    _lease_settings: RealPoolSettings | None
    _lease_raw: Any
    _lease_state: ConnState | None
    lease_open_cursors: int
    _lease_pins: int
    _lease_sticky: bool
    _lease_dirty: str | None
    lease_generation: int
    _lease_acquired_at: float
    _lease_site: list[traceback.FrameSummary] | None
    _lease_counters: LeaseCounters
    _lease_box: HeldBox

    def _lease_put(self, *, forced: bool) -> None:
        """Return the held connection (``_lease.py``)."""
        raise NotImplementedError

    def holders(self) -> dict[str, Any]:
        """What keeps this wrapper's connection (empty: nothing; it goes back).

        The one answer used by the release decision, the task bracket, the
        pytest plugin and the leak detector.
        """
        if self.connection is None:
            return {}
        held: dict[str, Any] = {}
        if self.lease_open_cursors:
            held["cursors"] = self.lease_open_cursors
        if self._lease_pins:
            held["pinned"] = self._lease_pins
        if self._lease_sticky:
            held["session_state"] = self._lease_dirty
        if self.in_atomic_block:
            held["atomic"] = len(self.atomic_blocks)
        if not self.autocommit:
            held["autocommit_off"] = True
        if self._lease_configuring:
            held["configuring"] = True
        raw = self._lease_raw
        if raw is not None and raw.pgconn.transaction_status != _IDLE and not raw.closed:
            # A transaction begun with raw SQL: it stays on this connection,
            # as it would with the stock backend, until it ends.
            held["server_transaction"] = TransactionStatus(raw.pgconn.transaction_status).name
        return held

    def lease_holders(self) -> dict[str, Any]:
        """:meth:`holders`, with ``unreleased`` for a connection nothing holds
        that was not given back yet (a bare ``ensure_connection()``)."""
        held = self.holders()
        if not held and self.connection is not None:
            held["unreleased"] = True
        return held

    def _lease_maybe_release(self) -> None:
        """Give the connection back if nothing holds it any more."""
        if self.connection is not None and not self.holders():
            self._lease_put(forced=False)

    # -- verbs for the bracket, the pytest plugin, the session policy ---------

    def lease_reset(self) -> None:
        """Drop pins and session stickiness; return the held connection (reset
        as needed), or discard one an interrupted hand-over left in the box."""
        self._lease_pins = 0
        self._lease_sticky = False
        box = self._lease_box
        if self.connection is not None:
            self._lease_put(forced=True)
        elif box.conn is not None and box.supply is not None:
            box.supply.discard(box, self._lease_counters)

    def lease_interrupted(self) -> bool:
        """Whether an asynchronous exception cut a hand-over short: the box
        names a connection the wrapper does not hold."""
        return self.connection is None and self._lease_box.conn is not None

    def lease_pins(self) -> int:
        """How many ``pinned()`` blocks are open (held connection or not)."""
        return self._lease_pins

    def lease_site(self) -> list[traceback.FrameSummary] | None:
        """Where the held connection was borrowed (``leak_threshold`` set)."""
        return self._lease_site

    def lease_borrow(self) -> tuple[int, float]:
        """The current borrow's generation (changes at every borrow and
        return) and ``monotonic()`` start, for the leak detector."""
        return self.lease_generation, self._lease_acquired_at

    def lease_counters(self) -> LeaseCounters:
        """This wrapper's counters (telemetry reads them; only its thread writes)."""
        return self._lease_counters

    def lease_count_leak(self) -> None:
        """Count a leak found in this wrapper (telemetry's ``leaks``)."""
        self._lease_counters.leaks += 1

    def mark_session_state(self, kind: str, *, sticky: bool) -> None:
        """A statement left session state (``kind``): reset the connection
        before its next borrower; ``sticky``: keep it with this wrapper until
        ``close()``."""
        self._lease_dirty = kind
        if sticky:
            self._lease_counters.session_pins += 1
            self._lease_sticky = True

    def session_state_policy(self) -> str | None:
        """What a statement leaving session state gets now: ``None`` during
        the engine's own set-up, ``"pinned"`` inside ``pinned()``, else the
        alias's ``session_state`` setting (``"pin"``, ``"error"``, ``"ignore"``)."""
        if self._lease_configuring:
            return None
        if self._lease_pins:
            return "pinned"
        settings = self._lease_settings
        return settings.session_state if settings is not None else "pin"

    def lease_unstick(self) -> None:
        """Let session state set outside ``pinned()`` stop holding the
        connection (it is still reset when returned)."""
        self._lease_sticky = False

    def lease_leak_threshold(self) -> float | None:
        """The alias's ``leak_threshold`` as this wrapper read it (None: off,
        or not borrowed yet)."""
        settings = self._lease_settings
        return settings.leak_threshold if settings is not None else None

    def lease_pooled(self) -> bool:
        """Whether this wrapper borrows per query (False: it behaves as the
        engine underneath, e.g. ``OPTIONS["pool"] = False``)."""
        return self._lease_enabled

    def lease_replay_rules(self) -> ReplayRules | None:
        """The alias's ``replay`` option as this wrapper read it (None: off)."""
        settings = self._lease_settings
        return settings.replay if settings is not None else None

    def lease_held_session(self) -> tuple[Any, ConnState] | None:
        """The held connection's psycopg connection and state (None: released)."""
        raw, state = self._lease_raw, self._lease_state
        if self.connection is None or raw is None or state is None:
            return None
        return raw, state

    def lease_give_back(self) -> None:
        """Return the held connection now, reset or discarded as its state needs."""
        if self.connection is not None:
            self._lease_put(forced=True)

    def lease_forget_settings(self) -> None:
        """Re-read the alias's settings at the next borrow (as after close_pool())."""
        self._lease_settings = None

    # Called by the cursors for statements that leave session state: see _session_policy.
    _lease_inspect = _session_policy.react

    def lease_pin(self) -> None:
        """Enter a ``pinned()`` block."""
        self._lease_pins += 1

    def lease_unpin(self) -> None:
        """Leave a ``pinned()`` block; the last one lets the connection go."""
        self._lease_pins -= 1
        if self._lease_pins == 0 and self.connection is not None:
            # Whatever ran in the block may have left session state.
            self._lease_dirty = self._lease_dirty or "pinned()"
            self._lease_maybe_release()

    def forget_after_fork(self) -> list[Any]:
        """In a fork child: drop the inherited connection without touching it."""
        inherited = [self.connection]
        self.connection = None
        self._lease_raw = None
        self._lease_state = None
        self._lease_box.conn = None
        self.lease_open_cursors = 0
        self._lease_sticky = False
        self._lease_dirty = None
        self.lease_generation += 1
        self._lease_supply = None
        self._lease_settings = None
        if self.in_atomic_block:
            # The parent's transaction is not the child's: fail the block loudly.
            self.closed_in_transaction = True
            self.needs_rollback = True
        return inherited
