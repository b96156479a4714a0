"""A Django PostgreSQL backend that returns pooled connections as soon as possible.

Use it with ``DATABASES[...]["ENGINE"] = "django_pg_real_pool"``. The public API
is what ``__all__`` lists; everything in ``_``-prefixed modules is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import LeakedConnection, PoolExhausted, SessionContextError, SessionStateError

__version__ = "0.1.0"

__all__ = [
    "LeakedConnection",
    "PoolExhausted",
    "SessionContextError",
    "SessionStateError",
    "__version__",
    "invalidate_setup",
    "pinned",
    "session_context",
    "task_scope",
]

if TYPE_CHECKING:
    from ._context import session_context
    from ._pinned import pinned
    from ._scope import task_scope
    from ._setup import invalidate_setup


def __getattr__(name: str) -> Any:
    # pinned() needs django.db; importing it lazily keeps `import
    # django_pg_real_pool` free of Django set-up (settings may not be ready).
    if name == "pinned":
        from ._pinned import pinned

        return pinned
    if name == "invalidate_setup":
        from ._setup import invalidate_setup

        return invalidate_setup
    if name == "session_context":
        from ._context import session_context

        return session_context
    if name == "task_scope":
        from ._scope import task_scope

        return task_scope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
