"""Which ``DATABASES`` aliases run this package, and on which pool: one answer.

An alias is ours when its ``ENGINE`` loads (the Django way, ``load_backend``)
a ``DatabaseWrapper`` built on :class:`~django_pg_real_pool._lease.LeaseMixin`:
the two engines, the composed ones (``django_pg_real_pool.postgis``, ...) and
any user engine made with ``compose.real_pool_wrapper`` or by subclassing.
Checks, telemetry, ``pool_status``, the queue adapters and the pytest plugin
all ask here instead of comparing ``ENGINE`` strings, which drift.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

PoolKind = Literal["native", "dj_db_conn_pool"]

#: The ``ENGINE`` of each pool kind's plain engine (the name telemetry reports).
NATIVE_ENGINE = "django_pg_real_pool"
QUEUEPOOL_ENGINE = "django_pg_real_pool.dj_db_conn_pool"
ENGINE_OF_KIND: Mapping[PoolKind, str] = {
    "native": NATIVE_ENGINE,
    "dj_db_conn_pool": QUEUEPOOL_ENGINE,
}


@functools.cache
def pool_kind_of_engine(engine: str) -> PoolKind | None:
    """The pool under ``engine``'s wrapper, or ``None`` when it is not ours.

    Cached per ``ENGINE`` string (a backend module does not change while the
    process runs). An engine that cannot be loaded is not ours: Django reports
    it when a connection is made, with the import error.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.db.utils import load_backend

    from ._lease import LeaseMixin
    from .base import NativePoolMixin

    try:
        wrapper = getattr(load_backend(engine), "DatabaseWrapper", None)
    except (ImproperlyConfigured, ImportError):
        return None
    if not isinstance(wrapper, type) or not issubclass(wrapper, LeaseMixin):
        return None
    # The only other LeaseMixin pool is django-db-connection-pool's; its module
    # is not imported here because that package is optional.
    return "native" if issubclass(wrapper, NativePoolMixin) else "dj_db_conn_pool"


def pool_kind(settings_dict: Mapping[str, Any]) -> PoolKind | None:
    """:func:`pool_kind_of_engine` of one ``DATABASES`` entry."""
    engine = settings_dict.get("ENGINE")
    return pool_kind_of_engine(engine) if isinstance(engine, str) else None


def our_aliases(databases: Mapping[str, Mapping[str, Any]]) -> dict[str, PoolKind]:
    """``{alias: pool kind}`` of the entries of ``databases`` that are ours."""
    kinds = {alias: pool_kind(entry) for alias, entry in databases.items()}
    return {alias: kind for alias, kind in kinds.items() if kind is not None}


def any_ours() -> bool:
    """Whether ``settings.DATABASES`` has an alias on this package's engines."""
    from django.conf import settings

    return bool(our_aliases(settings.DATABASES))
