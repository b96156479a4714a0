"""django-tenants on a releasing engine: its ``search_path`` follows each borrow.

django-tenants sets the tenant's ``search_path`` with a ``SET`` on the
connection before a cursor is used, and (with ``TENANT_LIMIT_SET_CALLS``)
skips it while it believes the connection already has it. Per-query release
breaks both assumptions unless:

* ``SET search_path`` (django-tenants sets it for each cursor, and around its
  introspection) counts as the connection's configuration, not session state
  left behind (which would pin the connection to the thread and reset it
  with ``DISCARD ALL``): every borrower on the alias sets the path it needs
  before its first statement, so one left by the previous borrower is never
  used;
* its "already set" belief is dropped at every borrow: the connection may be
  another one, carrying another tenant's path.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._lease import LeaseMixin

    _Base = LeaseMixin
else:
    _Base = object

_TENANTS_BACKEND = "django_tenants.postgresql_backend.base"
_SET_SEARCH_PATH = re.compile(r"\s*SET\s+(?:SESSION\s+)?search_path\b", re.IGNORECASE)


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

    def _lease_inspect(self, sql: Any, params: Any = None) -> dict[str, str | None] | None:
        # Called only for statements flagged as leaving session state.
        if type(sql) is str and _SET_SEARCH_PATH.match(sql):
            return None
        return super()._lease_inspect(sql, params)
