"""A transaction-mode pooler (PgBouncer, RDS Proxy, Supavisor) in front.

Such a pooler hands each transaction to whichever server session is free, so
whatever must outlive a transaction on *one* session breaks: named prepared
statements (``OPTIONS["prepare_threshold"]``), cursors declared ``WITH HOLD``
(Django's ``QuerySet.iterator()`` in autocommit, unless
``DISABLE_SERVER_SIDE_CURSORS``), and session state kept with ``pinned()``
(``real_pool["session_state"] = "pin"``). The failure is rarely at the
statement that caused it, and may be silent: another client's prepared
statement or cursor of the same name answers instead.

So the engine asks each new physical connection once, at its first lend,
whether a pooler sits in front: a pooler answers the startup with its own
cancel key, so the ``BackendKeyData`` process id psycopg received differs from
the server's ``pg_backend_pid()``. If one does and the alias's settings need
one session per client, the borrow raises ``ImproperlyConfigured`` naming each
setting: the first statement fails, loudly, instead of a later one by chance.
``real_pool["pooler"]``: ``"detect"`` (default), ``"transaction"`` (assume
one, no round trip), ``"off"`` (direct or a session-mode pooler: no check).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured

from ._settings import OPTIONS_KEY, parse_settings

logger = logging.getLogger("django_pg_real_pool")


def session_bound_settings(alias: str, settings_dict: Mapping[str, Any]) -> list[str]:
    """The settings of ``alias`` that need one server session per client, each
    with its fix; empty if the alias works behind a transaction-mode pooler."""
    options = settings_dict.get("OPTIONS", {})
    entry = f"DATABASES[{alias!r}]"
    found = []
    if options.get("prepare_threshold") is not None:
        found.append(
            f"{entry}['OPTIONS']['prepare_threshold'] is {options['prepare_threshold']!r}: "
            "remove it (Django's default, None, prepares nothing)"
        )
    if settings_dict.get("DISABLE_SERVER_SIDE_CURSORS") is not True:
        found.append(
            f"{entry}['DISABLE_SERVER_SIDE_CURSORS'] is not True: set it to True "
            "(QuerySet.iterator() declares cursors WITH HOLD)"
        )
    policy = parse_settings(alias, options).session_state
    if policy == "pin":
        found.append(
            f"{entry}['OPTIONS'][{OPTIONS_KEY!r}]['session_state'] is 'pin': set it to "
            "'error' (use SET LOCAL inside atomic())"
        )
    return found


class PoolerCheck:
    """What one alias's supply knows about the pooler in front (see module)."""

    __slots__ = ("alias", "mode", "refusal")

    def __init__(self, alias: str, settings_dict: Mapping[str, Any] | None) -> None:
        self.alias = alias
        if settings_dict is None:
            # A wrapper made outside settings.DATABASES: nothing to check against.
            self.mode = "off"
            self.refusal: str | None = None
            return
        self.mode = parse_settings(alias, settings_dict.get("OPTIONS", {})).pooler
        problems = session_bound_settings(alias, settings_dict)
        self.refusal = (
            (
                f"database alias {alias!r} reaches PostgreSQL through a transaction-mode "
                "pooler (PgBouncer or alike): each transaction may run on another server "
                "session, and these settings need one session per client: "
                + "; ".join(problems)
                + f". If the pooler runs in session mode, set DATABASES[{alias!r}]['OPTIONS']"
                f"[{OPTIONS_KEY!r}]['pooler'] = 'off'."
            )
            if problems and self.mode != "off"
            else None
        )

    @classmethod
    def of_alias(cls, alias: str) -> PoolerCheck:
        """The check for ``alias`` as ``settings.DATABASES`` configures it."""
        from django.db import connections

        return cls(alias, connections.settings.get(alias))

    def check_first_lend(self, raw: Any) -> None:
        """At a physical connection's first lend: raise if a pooler is in front
        and the settings cannot work behind it; remember the answer."""
        state = raw.pgrp_state
        if state.pooler is None:
            state.pooler = self.mode == "transaction" or (
                self.mode == "detect" and self.refusal is not None and is_behind_pooler(raw)
            )
            if state.pooler is None:
                return  # Broken: the lease replaces it; its successor is asked.
            if state.pooler:
                logger.debug("alias %r: a transaction-mode pooler is in front", self.alias)
        if state.pooler and self.refusal is not None:
            raise ImproperlyConfigured(self.refusal)


def is_behind_pooler(raw: Any) -> bool | None:
    """One round trip: whether the session answering is not the process that
    answered the startup (a pooler's own cancel key); None if the connection
    is broken (terminated while idle in the pool: the lease's own check on
    borrow replaces it). Never prepared: a named statement would itself
    outlive the transaction."""
    try:
        row = raw.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
    except psycopg.Error:
        return None
    return bool(row is not None and row[0] != raw.info.backend_pid)
