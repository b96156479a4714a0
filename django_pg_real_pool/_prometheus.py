"""django-prometheus' backend on a releasing engine: its connection counter.

django-prometheus counts new connections in ``get_new_connection()``, which
borrowing skips (the pool opens physical connections itself). Its cursor
metrics need nothing: its instrumented cursor class reaches psycopg through
``get_connection_params()``, which the pools use.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._setup import ConnectionSetupMixin

    _Base = ConnectionSetupMixin
else:
    _Base = object

_PROMETHEUS_MIXIN = "django_prometheus.db.common"

# Physical connections already counted (set-up runs again after DISCARD ALL
# or a change of types: count each connection once).
_counted: weakref.WeakSet[Any] = weakref.WeakSet()


def is_prometheus_wrapper(base: type[Any]) -> bool:
    """Whether ``base`` derives from django-prometheus' wrapper mixin."""
    module = sys.modules.get(_PROMETHEUS_MIXIN)
    mixin = getattr(module, "DatabaseWrapperMixin", None)
    return isinstance(mixin, type) and issubclass(base, mixin)


class PrometheusMixin(_Base):
    """Goes in front of the engine's mixin on a django-prometheus wrapper."""

    def lease_setup_connection(self, raw: Any, *, refresh: bool) -> None:
        if raw not in _counted:
            _counted.add(raw)
            from django_prometheus.db import connections_total

            connections_total.labels(self.alias, self.vendor).inc()
        super().lease_setup_connection(raw, refresh=refresh)
