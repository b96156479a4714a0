"""Make a borrowed connection carry its borrower's session context.

Each physical connection remembers what was applied to it
(``ConnState.replayed``: a sorted tuple of (name, value) pairs, ``None`` for
the server's defaults). At the end of every borrow :func:`on_borrow` compares
it with what the borrower's context wants (``_context.py``): an identity or a
tuple comparison, no round trip, when they match (the same tenant back to
back, or no context anywhere). When they differ, ONE statement applies the
difference::

    SELECT set_config(%s, %s, false), set_config(%s, %s, false), ...

names and values passed as parameters (nothing is spliced into SQL), keys the
new context lacks set back with a NULL value, which is ``RESET`` for
``set_config`` (``role`` included, or Django's ``assume_role`` when set). Note
that a custom setting (``app.x``) never set on a session reads as NULL with
``current_setting('app.x', true)``, and as ``''`` once set and reset: treat
both as "no value". It runs on the psycopg connection itself, so the session
policy (``_session_policy.py``) never sees it as state left behind.

Applying fails (an unknown role, a value the server rejects, a dead
connection): the connection is discarded and the borrow raises
:class:`~django_pg_real_pool.errors.SessionContextError`; no query runs with
another borrower's values or without the ones asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from . import _context
from ._context import ROLE, Values
from .errors import SessionContextError

if TYPE_CHECKING:
    from ._lease import LeaseMixin
    from ._pools import ConnState

#: A value no setting can have (PostgreSQL strings never hold NUL): "this
#: key's value on the connection is not known, set it at the next borrow".
UNKNOWN = "\x00unknown"

_IDLE = TransactionStatus.IDLE
_INERROR = TransactionStatus.INERROR


def on_borrow(wrapper: LeaseMixin, raw: Any, state: ConnState) -> None:
    """At the end of a borrow, before the borrower's first statement: make
    ``raw`` carry the borrower's context. On failure the connection is
    discarded (the wrapper holds nothing) and ``SessionContextError`` raised."""
    contexts = _context.current.get()
    want = None
    if contexts is not None:
        entry = contexts.get(wrapper.alias)
        if entry is not None:
            want = entry.wanted
    have = state.replayed
    if want is have or want == have:
        return
    try:
        apply(wrapper, raw, state, want)
    except BaseException:
        # Its session state is unknown now: never lend it again.
        raw.close()
        wrapper.lease_give_back()
        raise


def apply_held(wrapper: LeaseMixin) -> None:
    """A ``session_context`` block entered or left: a connection the wrapper
    holds already (``atomic()``, ``pinned()``, an open cursor) gets the new
    values now; it is not borrowed again before its next query."""
    held = wrapper.lease_held_session()
    if held is None:
        return
    raw, state = held
    want = _context.wanted(wrapper.alias)
    if want is state.replayed or want == state.replayed:
        return
    if raw.pgconn.transaction_status == _INERROR:
        # A block left because a statement failed in a transaction: the server
        # refuses everything until a rollback, which also undoes what the
        # transaction set. Raising here would hide the original error; the
        # next borrow sets the values again.
        keys = [*dict(state.replayed or ()), *dict(want or ())]
        state.replayed = _with_unknown(dict(state.replayed or ()), keys)
        return
    apply(wrapper, raw, state, want)


def forget(held: tuple[Any, ConnState] | None, keys: list[str]) -> None:
    """A statement is about to change ``keys`` on the held connection (``held``,
    from ``lease_held_session()``): their values there are unknown until the
    next borrow sets them again (the statement may fail, or its transaction
    roll back)."""
    if held is not None:
        state = held[1]
        state.replayed = _with_unknown(dict(state.replayed or ()), keys)


def confirm(wrapper: LeaseMixin, values: Mapping[str, str | None]) -> None:
    """A statement the ``replay`` option recorded ran without error: outside a
    transaction (which a rollback could undo) the values it set are on the
    held connection now, so the next borrow in the same context sends
    nothing. A reset (``None``) stays unknown: ``RESET ROLE`` goes back to the
    login role, not to Django's ``assume_role`` that a replay would set."""
    held = wrapper.lease_held_session()
    if held is None:
        return
    raw, state = held
    if raw.pgconn.transaction_status != _IDLE:
        return
    have = dict(state.replayed or ())
    have.update((k, v) for k, v in values.items() if v is not None)
    state.replayed = tuple(sorted(have.items())) or None


def apply(wrapper: LeaseMixin, raw: Any, state: ConnState, want: Values | None) -> None:
    """Send the difference between ``state.replayed`` and ``want`` in one round trip."""
    if state.pooler:
        # Each transaction may run on another server session: what set_config
        # leaves on one would reach another client, and miss this one.
        raise SessionContextError(
            f"database alias {wrapper.alias!r} reaches PostgreSQL through a transaction-mode "
            "pooler: session values do not stay with one client there. Set them with SET "
            "LOCAL / set_config(..., true) inside atomic(), or connect directly (or through "
            f"a session-mode pooler, with DATABASES[{wrapper.alias!r}]['OPTIONS']"
            "['real_pool']['pooler'] = 'off')."
        )
    have = dict(state.replayed or ())
    wanted = dict(want or ())
    changes: list[tuple[str, str | None]] = [(k, v) for k, v in wanted.items() if have.get(k) != v]
    changes += [(k, _default(wrapper, k)) for k in have if k not in wanted]
    # The role last: a setting only the login role may change goes first.
    changes.sort(key=lambda change: change[0] == ROLE)
    sql = "SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(changes))
    params = [item for change in changes for item in change]
    in_transaction = raw.pgconn.transaction_status != _IDLE
    try:
        # Not prepared: one protocol round trip either way, and nothing is
        # left on the session for a pooler or DISCARD ALL to trip on.
        raw.execute(sql, params, prepare=False)
    except psycopg.Error as exc:
        state.replayed = _with_unknown(have, [k for k, _ in changes])
        what = ", ".join(f"{k}={v!r}" if v is not None else f"{k}=DEFAULT" for k, v in changes)
        raise SessionContextError(
            f"database alias {wrapper.alias!r}: could not apply the session context "
            f"({what}): {exc}. No query ran with it; a borrowed connection was discarded. "
            "Check the role exists and the values are valid for these settings."
        ) from exc
    if in_transaction:
        # A rollback would undo what was just set: check again at the next borrow.
        state.replayed = _with_unknown(wanted, [k for k, _ in changes])
    else:
        state.replayed = want


def _default(wrapper: LeaseMixin, key: str) -> str | None:
    if key == ROLE:
        # The connection's own set-up sets Django's assume_role (_setup.py).
        role: str | None = wrapper.settings_dict["OPTIONS"].get("assume_role") or None
        return role
    return None


def _with_unknown(values: dict[str, str], keys: list[str]) -> Values | None:
    for key in keys:
        values[key] = UNKNOWN
    return tuple(sorted(values.items())) or None
