"""The dj engine's creation class: django-db-connection-pool's, built once,
giving parked connections back before its pools are disposed."""

from __future__ import annotations

from typing import Any

from dj_db_conn_pool.core.mixins import DatabasePoolWrapperMixin
from dj_db_conn_pool.core.mixins.creation import DatabaseCreationMixin
from django.db.backends.postgresql import base as pg_base

from .. import _registry
from .._engines import QUEUEPOOL_ENGINE


class _GiveBackParkedFirst:
    """Creation mixin: parked connections go back before the pools are disposed.

    django-db-connection-pool disposes every pool before destroying a test
    database; disposing closes only the connections resting in a pool, and a
    parked one is lent out for SQLAlchemy: it would keep a session on the
    database being dropped.
    """

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        for supply in _registry.supplies():
            if supply.engine == QUEUEPOOL_ENGINE:
                supply.give_back()
        super()._destroy_test_db(test_database_name, verbosity)  # type: ignore[misc]


def creation_class(base: type[Any]) -> type[Any]:
    """django-db-connection-pool's creation class on ``base``'s, built once per base."""
    return type(
        "DatabaseCreation",
        (_GiveBackParkedFirst, DatabaseCreationMixin, base.creation_class),
        {"__module__": __name__},
    )


DatabaseCreation = creation_class(pg_base.DatabaseWrapper)


class OneCreationClass:
    """Skips django-db-connection-pool's ``DatabasePoolWrapperMixin.__init__``.

    All it does is ``self.creation_class = type(..., (DatabaseCreationMixin,
    self.creation_class), {})``: a new class for every wrapper. A class is in
    its own ``__mro__``, a reference cycle, so each wrapper dropped (one per
    thread and alias, each ``copy()``) left its class to the garbage collector
    (Django 6.1's ``test_release_memory_without_garbage_collection``).
    ``DatabaseWrapper.creation_class`` is that class, built once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The next __init__ after django-db-connection-pool's: Django's.
        super(DatabasePoolWrapperMixin, self).__init__(*args, **kwargs)
