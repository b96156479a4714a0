"""``ENGINE = "django_pg_real_pool"``: Django's PostgreSQL backend on its native
``psycopg_pool`` pool, returning the connection to the pool as soon as possible.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import django

from ._compat import check_django_version, check_psycopg3

check_django_version(django.VERSION)

from django.db.backends.postgresql import base as pg_base  # noqa: E402

check_psycopg3(pg_base.is_psycopg3)  # type: ignore[attr-defined]

from . import _registry  # noqa: E402
from ._compose import schema_editor_class  # noqa: E402
from ._credentials import pool_kwargs  # noqa: E402
from ._engines import NATIVE_ENGINE  # noqa: E402
from ._lease import LeaseMixin  # noqa: E402
from ._pools import NativePool, PooledConnection  # noqa: E402
from ._setup import PoolConfigure  # noqa: E402
from ._supply import Supply  # noqa: E402
from ._validate import check_conn_max_age, pool_options_of, resolve_isolation_level  # noqa: E402

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

logger = logging.getLogger("django_pg_real_pool")

__all__ = ["DatabaseWrapper", "NativePoolMixin"]

#: The ``ENGINE`` setting of this backend (the name of its pool kind).
ENGINE = NATIVE_ENGINE


class NativePoolMixin(LeaseMixin):
    """Per-query release on Django's native ``psycopg_pool`` pool, for any
    wrapper derived from Django's PostgreSQL one (see ``compose.py``)."""

    @property
    def pool(self) -> ConnectionPool[Any] | None:  # type: ignore[override]
        if self.connection is None:
            # Django reads this before connecting (close_if_health_check_failed):
            # honour a settings_dict edited since __init__, as connect() does.
            self._lease_enabled = self._lease_is_enabled()
        if not self._lease_enabled:
            return None
        # Our own per-alias pools, apart from the stock backend's: both
        # engines may serve different aliases in one process.
        pool: ConnectionPool[Any] = self._lease_entry().adapter.pool
        return pool

    def _lease_entry(self) -> Supply:
        # get() first: Django reads `pool` often, and a found pool needs no
        # bound method for its creation.
        return _registry.get(self.alias) or _registry.get_or_create(
            self.alias, self._lease_create_pool
        )

    def _lease_create_pool(self) -> Supply:
        """The alias's pool and supply (the registry calls this under its lock)."""
        from psycopg_pool import ConnectionPool

        options = pool_options_of(self.alias, self.settings_dict)
        check_conn_max_age(self.alias, self.settings_dict)
        self.isolation_level = resolve_isolation_level(self.settings_dict["OPTIONS"])
        connect_kwargs = self.get_connection_params()
        # Pooled connections always rest in autocommit: borrowing then
        # needs no round trip to set it.
        connect_kwargs["autocommit"] = True
        options.setdefault("name", f"django_pg_real_pool:{self.alias}")
        configure = PoolConfigure(self)
        pool = ConnectionPool(
            kwargs=pool_kwargs(self.alias, self.settings_dict, connect_kwargs),
            open=False,
            configure=configure,
            connection_class=PooledConnection,
            **options,
        )
        pool.open()
        return Supply(ENGINE, NativePool(pool, self.alias), configure)

    def _lease_make_supply(self) -> Supply:
        supply = self._lease_entry()
        self.isolation_level = resolve_isolation_level(self.settings_dict["OPTIONS"])
        return supply

    def close_pool(self) -> None:
        _registry.close(self.alias)
        # This wrapper finds the new pool at its next borrow; other threads'
        # wrappers notice the closed pool when they next borrow.
        self.lease_forget_settings()


class DatabaseWrapper(NativePoolMixin, pg_base.DatabaseWrapper):  # type: ignore[misc]
    """Django's PostgreSQL ``DatabaseWrapper`` with per-query pool release."""

    SchemaEditorClass = schema_editor_class(pg_base.DatabaseWrapper)
