"""Put the release mechanism on another PostgreSQL-based backend.

A backend whose ``DatabaseWrapper`` derives from Django's PostgreSQL one
(PostGIS, django-tenants, django-prometheus, an instrumented wrapper of your
own) becomes an engine of this package with one line in a ``base.py``::

    # myproject/db/base.py; then ENGINE = "myproject.db"
    from django_pg_real_pool.compose import real_pool_wrapper

    DatabaseWrapper = real_pool_wrapper("django_prometheus.db.backends.postgresql")

The ready engines (``django_pg_real_pool.postgis``, ``.tenants``,
``.prometheus`` and their ``django_pg_real_pool.dj_db_conn_pool.*`` twins) are
exactly that.
"""

from __future__ import annotations

from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

from ._compose import build, resolve_base

__all__ = ["real_pool_wrapper"]


def real_pool_wrapper(
    base: type[Any] | str, *, pool: Literal["native", "dj_db_conn_pool"] = "native"
) -> type[Any]:
    """Return ``base``'s ``DatabaseWrapper`` with per-query release.

    ``base`` is a ``DatabaseWrapper`` class or a backend's ``ENGINE`` path.
    ``pool`` picks the pool underneath: Django's native ``psycopg_pool`` pool
    (``OPTIONS["pool"]``) or django-db-connection-pool's (``POOL_OPTIONS``).
    Everything ``base`` adds (operations, features, introspection, schema
    editor, creation, ``connection_created`` work) is kept; per-connection
    work it does in ``get_new_connection()`` is not run by borrows, so such a
    backend needs a ``lease_setup_connection()`` override (PostGIS' geometry
    adapters are handled). The same class is returned for the same arguments.

    Raises ``ImproperlyConfigured`` naming ``base`` if it is not derived from
    Django's PostgreSQL backend, and for an unknown ``pool``.
    """
    wrapper = resolve_base(base)
    if pool == "native":
        from .base import NativePoolMixin

        return build(_adjusted(NativePoolMixin, wrapper, ()), wrapper)
    if pool == "dj_db_conn_pool":
        from .dj_db_conn_pool.base import DjPoolMixin, UnwrapForPostGIS, creation_class

        extra = (UnwrapForPostGIS,) if hasattr(wrapper, "register_geometry_adapters") else ()
        return build(
            _adjusted(DjPoolMixin, wrapper, extra),
            wrapper,
            {"creation_class": creation_class(wrapper)},
        )
    raise ImproperlyConfigured(
        f"real_pool_wrapper(pool={pool!r}): pool must be 'native' (Django's psycopg_pool "
        "pool) or 'dj_db_conn_pool' (django-db-connection-pool)."
    )


_adjusted_mixins: dict[tuple[type[Any], ...], type[Any]] = {}


def _adjusted(mixin: type[Any], base: type[Any], extra: tuple[type[Any], ...]) -> type[Any]:
    """``mixin`` preceded by ``extra`` and by what known bases need
    (django-tenants, django-prometheus)."""
    from ._prometheus import PrometheusMixin, is_prometheus_wrapper
    from ._tenants import TenantsMixin, is_tenants_wrapper

    known = [
        adjustment
        for adjustment, applies in (
            (TenantsMixin, is_tenants_wrapper),
            (PrometheusMixin, is_prometheus_wrapper),
        )
        if applies(base)
    ]
    parts = (*known, *extra)
    if not parts:
        return mixin
    key = (*parts, mixin)
    if key not in _adjusted_mixins:
        _adjusted_mixins[key] = type(mixin.__name__, key, {"__module__": __name__})
    return _adjusted_mixins[key]
