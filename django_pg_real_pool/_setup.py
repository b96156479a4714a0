"""One physical connection's life in the engine, apart from who holds it.

Django's ``connect()`` configures every new connection (time zone, role,
isolation level) and sends ``connection_created``; with a pool underneath, the
engine does that once per physical connection, when the pool creates it (the
pool's ``configure`` callback) or after a ``DISCARD ALL`` undid it, never per
borrow. (Health checks before reuse are the supply's: ``_supply.py``.)

Set-up that stays right: what a receiver registers on a connection (type
adapters for ``hstore``, PostGIS geometries, an enum) depends on the database's
types, which a migration may change after connections were set up. A
process-wide :data:`generation` counts such changes (:func:`invalidate_setup`:
``prepare_database()``, DDL that creates or alters extensions or types run
through a schema editor, ``post_migrate``); each physical connection remembers
the generation it was set up at and is set up again, ``connection_created``
included, at its first borrow after a change. A borrow when nothing changed
compares two integers.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper

    _Base = PGWrapper
else:
    _Base = object

#: Bumped whenever the database's types may have changed (see the module).
#: Read as ``_setup.generation`` on every borrow: never import the name.
generation = 1
_generation_lock = threading.Lock()
_watching_migrations = False
# Per alias: the generation at which PostGIS' type caches were last cleared.
_postgis_cleared: dict[str, int] = {}

# DDL after which adapters registered on connections may be stale.
_TYPE_DDL = re.compile(
    r"\s*(?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+)?(?:EXTENSION|TYPE|DOMAIN)\b", re.IGNORECASE
)

# Django's own per-process caches of type oids, read by connection_created
# receivers (django.contrib.postgres): cleared with each generation, as
# Django's CreateExtension operation clears them.
_DJANGO_OID_CACHES = (
    ("django.contrib.postgres.signals", "get_hstore_oids"),
    ("django.contrib.postgres.signals", "get_citext_oids"),
)


def invalidate_setup() -> None:
    """Set up every physical connection again at its next borrow.

    Call it after changing the database's types outside a migration (a
    ``CREATE EXTENSION`` on a plain cursor, say); the engine calls it itself
    for ``prepare_database()``, extension/type DDL run by a schema editor and
    ``post_migrate``.
    """
    global generation
    with _generation_lock:
        generation += 1
    for module_name, name in _DJANGO_OID_CACHES:
        module = sys.modules.get(module_name)
        cached = getattr(module, name, None)
        if cached is not None:
            cached.cache_clear()


def changes_types(sql: object) -> bool:
    """Whether ``sql`` creates, alters or drops an extension, type or domain."""
    return type(sql) is str and _TYPE_DDL.match(sql) is not None


def watch_migrations() -> None:
    """Invalidate the set-up after each ``migrate`` (connected once per process)."""
    global _watching_migrations
    if _watching_migrations:
        return
    from django.db.models.signals import post_migrate

    post_migrate.connect(_after_migrate, dispatch_uid="django_pg_real_pool.setup")
    _watching_migrations = True


def _after_migrate(**kwargs: Any) -> None:
    invalidate_setup()


class SetupAwareSchemaEditor:
    """Schema editor mixin: DDL that changes types invalidates the set-up."""

    def execute(self, sql: Any, params: Any = ()) -> None:
        super().execute(sql, params)  # type: ignore[misc]
        if changes_types(str(sql)):
            invalidate_setup()


class ConnectionSetupMixin(_Base):
    """Configure physical connections (see the module).

    ``connection_created`` itself is sent by the lease at a connection's first
    borrow, inside :meth:`_lease_configuring_block`.
    """

    # Set by LeaseMixin.
    _lease_configuring: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        watch_migrations()

    def _lease_configure(self, raw: Any) -> None:
        """Per physical connection: what Django's connect() does every time.

        Also after a ``DISCARD ALL`` and after :func:`invalidate_setup`; then
        ``connection_created`` is sent again too.
        """
        state = raw.pgrp_state
        # Read first: a change while this runs sets the connection up again
        # at its next borrow.
        current = generation
        refresh = state.setup_gen != 0
        state.announced = False
        if not raw.autocommit:
            raw.autocommit = True
        self._configure_connection(raw)  # type: ignore[attr-defined]
        options = self.settings_dict["OPTIONS"]
        if "isolation_level" in options:
            raw.isolation_level = self.isolation_level  # type: ignore[attr-defined]
        self._lease_register_tzloader(raw)
        self.lease_setup_connection(raw, refresh=refresh)
        state.setup_gen = current

    def lease_setup_connection(self, raw: Any, *, refresh: bool) -> None:
        """Hook for composed engines: per-physical-connection work the base
        backend does in ``get_new_connection()``, which borrowing skips.

        ``raw`` is the psycopg connection. ``refresh`` is True when it was set
        up before the database's types may have changed (see
        :func:`invalidate_setup`): drop caches that could be stale.
        Runs before ``connection_created``.

        Built in: PostGIS' geometry adapters, found by the method PostGIS
        wrappers have (as Django's ``CreateExtension`` operation does), so
        that any composition with PostGIS gets them.
        """
        register_geometry_adapters = getattr(self, "register_geometry_adapters", None)
        if register_geometry_adapters is not None:
            # PostGIS caches its types' oids per alias, a missing type (the
            # extension not created yet) as None: fetched again once per
            # generation (for connections new or set up again alike), not
            # once per connection.
            clear = _postgis_cleared.get(self.alias) != generation
            if clear:
                _postgis_cleared[self.alias] = generation
            register_geometry_adapters(raw, clear)

    def prepare_database(self) -> None:
        # PostGIS creates its extension here, on a plain cursor.
        super().prepare_database()
        invalidate_setup()

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


class PoolConfigure:
    """A pool's ``configure`` callback: the wrapper that created the pool
    configures each new connection, as with Django's own pool.

    That wrapper holds the pool's supply, which holds the pool: holding the
    wrapper from the pool would close a reference cycle, which only the garbage
    collector frees. Closing the pool cuts this link (``Supply.close``), so a
    closed pool is freed as soon as the last wrapper lets go of it.
    """

    __slots__ = ("wrapper",)

    def __init__(self, wrapper: ConnectionSetupMixin) -> None:
        self.wrapper: ConnectionSetupMixin | None = wrapper

    def detach(self) -> None:
        self.wrapper = None

    def __call__(self, raw: Any) -> None:
        wrapper = self.wrapper
        if wrapper is None:
            # A connection opening while its pool closes: psycopg_pool drops it.
            raise psycopg.OperationalError("the pool was closed")
        wrapper._lease_configure(raw)
