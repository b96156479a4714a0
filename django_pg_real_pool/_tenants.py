"""django-tenants on a releasing engine: its ``search_path`` follows each borrow.

django-tenants sets the tenant's ``search_path`` with a ``SET`` on the
connection before a cursor is used, and (with ``TENANT_LIMIT_SET_CALLS``)
skips it while it believes the connection already has it. Per-query release
breaks both assumptions unless:

* its own ``SET search_path`` counts as the connection's configuration, not
  session state left behind (which would pin the connection to the thread
  and reset it with ``DISCARD ALL``): every borrower on the alias sets the
  path it needs before its first statement, so one left by the previous
  borrower is never used;
* its "already set" belief is dropped at every borrow: the connection may be
  another one, carrying another tenant's path.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._lease import LeaseMixin

    _Base = LeaseMixin
else:
    _Base = object

_TENANTS_BACKEND = "django_tenants.postgresql_backend.base"


def is_tenants_wrapper(base: type[Any]) -> bool:
    """Whether ``base`` derives from django-tenants' wrapper."""
    module = sys.modules.get(_TENANTS_BACKEND)
    wrapper = getattr(module, "DatabaseWrapper", None)
    return isinstance(wrapper, type) and issubclass(base, wrapper)


class TenantsMixin(_Base):
    """Goes in front of the engine's mixin on a django-tenants wrapper."""

    search_path_set_schemas: Any

    def _lease_connect(self) -> None:
        super()._lease_connect()
        # A new borrow: whatever django-tenants set was on another borrow.
        self.search_path_set_schemas = None

    def _handle_search_path(self, cursor: Any = None) -> None:
        with self._lease_configuring_block():
            super()._handle_search_path(cursor)  # type: ignore[misc]
