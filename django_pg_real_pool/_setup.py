"""One physical connection's life in the engine, apart from who holds it.

Django's ``connect()`` configures every new connection (time zone, role,
isolation level) and sends ``connection_created``; with a pool underneath, the
engine does that once per physical connection, when the pool creates it (the
pool's ``configure`` callback) or after a ``DISCARD ALL`` undid it, never per
borrow. Before reuse, the lease checks a connection without a round trip
(see ``ConnState.poller``); one it finds suspect is pinged here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from ._pools import ping

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper

    from ._fork import LeaseCounters

    _Base = PGWrapper
else:
    _Base = object


class ConnectionSetupMixin(_Base):
    """Configure physical connections, ping suspect ones (see the module).

    ``connection_created`` itself is sent by the lease at a connection's first
    borrow, inside :meth:`_lease_configuring_block`.
    """

    # Set by LeaseMixin.
    _lease_configuring: bool
    _lease_counters: LeaseCounters
    _lease_idle_check: float | None

    def _lease_ping_fails(self, raw: Any) -> bool:
        """One round trip on a suspect connection: True if it does not work."""
        self._lease_counters.pings += 1
        try:
            ping(raw)
        except psycopg.Error:
            return True
        return False

    def _lease_configure(self, raw: Any) -> None:
        """Per physical connection: what Django's connect() does every time."""
        if not raw.autocommit:
            raw.autocommit = True
        self._configure_connection(raw)  # type: ignore[attr-defined]
        options = self.settings_dict["OPTIONS"]
        if "isolation_level" in options:
            raw.isolation_level = self.isolation_level  # type: ignore[attr-defined]
        self._lease_register_tzloader(raw)
        raw.pgrp_state.configured = True

    def _lease_register_tzloader(self, raw: Any) -> None:
        from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
        from django.db.backends.postgresql.psycopg_any import register_tzloader
        from psycopg.pq import Format

        tzloader = raw.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        if self.timezone != tzloader.timezone:
            register_tzloader(self.timezone, raw)

    @contextmanager
    def _lease_configuring_block(self) -> Iterator[None]:
        """Session state set here is the connection's configuration, not dirt."""
        previous = self._lease_configuring
        self._lease_configuring = True
        try:
            yield
        finally:
            self._lease_configuring = previous
