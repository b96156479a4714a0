"""``DatabaseWrapper`` for ``ENGINE = "django_pg_real_pool.dj_db_conn_pool"``.

django-db-connection-pool keeps one SQLAlchemy ``QueuePool`` per alias in a
module-level container; this engine borrows from it per query through the same
lease as the native engine. Differences from the plain third-party engine:
``POOL_OPTIONS["PRE_PING"]`` defaults to False (the supply checks connections
cheaply itself), and the container is emptied in fork children (``_pool.py``).
"""

from __future__ import annotations

from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured

from .._compat import check_django_version, check_psycopg3

check_django_version(django.VERSION)

from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402
from django.db.backends.postgresql import base as pg_base  # noqa: E402

check_psycopg3(pg_base.is_psycopg3)  # type: ignore[attr-defined]

try:
    from dj_db_conn_pool.backends.postgresql.mixins import PGDatabaseWrapperMixin
    from dj_db_conn_pool.core import pool_container
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImproperlyConfigured(
        "ENGINE 'django_pg_real_pool.dj_db_conn_pool' needs django-db-connection-pool "
        f"({exc}). Install the extra: pip install 'django-pg-real-pool[dj-db-conn-pool]', "
        "or use ENGINE 'django_pg_real_pool' on Django's native pool."
    ) from exc

from .. import _registry  # noqa: E402
from .._compose import schema_editor_class  # noqa: E402
from .._credentials import credentials_source  # noqa: E402
from .._engines import QUEUEPOOL_ENGINE  # noqa: E402
from .._lease import LeaseMixin  # noqa: E402
from .._pools import PooledConnection  # noqa: E402
from .._supply import Supply  # noqa: E402
from .._validate import resolve_isolation_level  # noqa: E402
from ._creation import DatabaseCreation, OneCreationClass, creation_class  # noqa: E402
from ._pool import Connect, QueuePoolAdapter, UnwrapForPostGIS  # noqa: E402

__all__ = ["DatabaseWrapper", "DjPoolMixin", "UnwrapForPostGIS", "creation_class"]

#: The ``ENGINE`` setting of this backend (the name of its pool kind).
ENGINE = QUEUEPOOL_ENGINE


class DjPoolMixin(
    LeaseMixin,
    OneCreationClass,
    PGDatabaseWrapperMixin,  # type: ignore[misc]
):
    """Per-query release on django-db-connection-pool's SQLAlchemy pool, for
    any wrapper derived from Django's PostgreSQL one (see ``compose.py``).
    The wrapper class also needs ``creation_class(base)``."""

    # Django's representation (django-db-connection-pool's mixin replaces it).
    __repr__ = BaseDatabaseWrapper.__repr__

    def _lease_make_supply(self) -> Supply:
        if self.settings_dict["OPTIONS"].get("pool"):
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]['OPTIONS'] has 'pool', but ENGINE "
                "'django_pg_real_pool.dj_db_conn_pool' pools with SQLAlchemy: move the "
                "sizes to DATABASES[...]['POOL_OPTIONS'] ({'POOL_SIZE': 10, "
                "'MAX_OVERFLOW': 0}), or use ENGINE 'django_pg_real_pool'."
            )
        self.isolation_level = resolve_isolation_level(self.settings_dict["OPTIONS"])
        with pool_container.lock:
            pool = pool_container.get(self.alias) if pool_container.has(self.alias) else None
        if pool is None:
            pool_options = self.settings_dict.setdefault("POOL_OPTIONS", {})
            pool_options.setdefault("PRE_PING", False)
            # django-db-connection-pool creates the pool (from POOL_OPTIONS) on
            # its first checkout; give that first connection straight back.
            self.get_new_connection(self.get_connection_params()).close()
            with pool_container.lock:
                pool = pool_container.get(self.alias)
        # One supply per pool, shared by all threads. A pool
        # django-db-connection-pool replaced (disposed) gets a new one.
        return _registry.get_or_create(
            self.alias, lambda: self._lease_pair(pool), lambda supply: supply.adapter.pool is pool
        )

    def _lease_pair(self, pool: Any) -> Supply:
        """The supply of ``pool`` (the registry calls this under its lock)."""
        # In place of django-db-connection-pool's connection factory, a lambda
        # over the wrapper that created the pool (see Connect). SQLAlchemy's
        # own setter: it wraps the callable as the constructor does.
        pool._creator = Connect(
            self.get_connection_params(), credentials_source(self.alias, self.settings_dict)
        )
        return Supply(ENGINE, QueuePoolAdapter(pool, self.alias))

    def _get_new_connection(self, conn_params: dict[str, Any]) -> PooledConnection:
        # django-db-connection-pool's connection factory calls this, until the
        # pool gets a Connect.
        return Connect(conn_params, credentials_source(self.alias, self.settings_dict))()

    def close_pool(self) -> None:
        _registry.close(self.alias)
        # A pool django-db-connection-pool made that no borrow paired with a
        # supply yet: only its container knows it.
        with pool_container.lock:
            unpaired = pool_container.pop(self.alias, None)
        if unpaired is not None:
            unpaired.dispose()
        self.lease_forget_settings()


class DatabaseWrapper(DjPoolMixin, pg_base.DatabaseWrapper):  # type: ignore[misc]
    """django-db-connection-pool's PostgreSQL wrapper with per-query release."""

    creation_class = DatabaseCreation
    SchemaEditorClass = schema_editor_class(pg_base.DatabaseWrapper)
