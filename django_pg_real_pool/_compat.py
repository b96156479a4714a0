"""What the engines need from Django and psycopg: versions, and Django's hooks
the lease must keep honouring (``async_unsafe``, test-isolation guards)."""

from __future__ import annotations

import os
from asyncio import _get_running_loop
from typing import Any

from django.core.exceptions import ImproperlyConfigured, SynchronousOnlyOperation
from django.db.backends.base.base import BaseDatabaseWrapper

MIN_DJANGO = (5, 1)


def check_django_version(version: tuple[object, ...]) -> None:
    """Refuse Django < 5.1: the native pool this engine builds on came in 5.1."""
    major, minor = int(str(version[0])), int(str(version[1]))
    if (major, minor) < MIN_DJANGO:
        raise ImproperlyConfigured(
            f"django_pg_real_pool needs Django >= {MIN_DJANGO[0]}.{MIN_DJANGO[1]} (its native "
            f"connection pool); this is Django {major}.{minor}. Upgrade Django, e.g. "
            "pip install 'Django>=5.2'."
        )


def check_psycopg3(is_psycopg3: bool) -> None:
    """Refuse psycopg2: pooling needs psycopg 3 and psycopg_pool."""
    if not is_psycopg3:
        raise ImproperlyConfigured(
            "django_pg_real_pool needs psycopg 3, but Django loaded psycopg2 (psycopg 3 is "
            "not installed or failed to import). Install it: pip install 'psycopg[pool]' "
            "(or 'psycopg[binary,pool]')."
        )


def check_not_async() -> None:
    """Django's ``async_unsafe`` check, without raising to find no event loop."""
    if _get_running_loop() is not None and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
        raise SynchronousOnlyOperation(
            "You cannot call this from an async context - use a thread or sync_to_async."
        )


def _is_djangos(method: Any) -> bool:
    """Whether ``method`` is Django's own, not a test-isolation guard's stand-in."""
    return getattr(method, "__module__", None) == "django.db.backends.base.base"


#: Django's ensure_connection() as found at import (None if a guard had already
#: replaced it: then every borrow goes through whatever is installed). Guards
#: (SimpleTestCase's thread check, pytest-django's blocker) replace it on the
#: class; the lease compares against this to notice them.
DJANGO_ENSURE_CONNECTION = (
    BaseDatabaseWrapper.ensure_connection
    if _is_djangos(BaseDatabaseWrapper.ensure_connection)
    else None
)
