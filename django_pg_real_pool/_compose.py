"""Putting the release mechanism on a backend derived from Django's PostgreSQL one.

Shared by both engines and every composed engine (``compose.py`` is the public
face): checking the base, building the wrapper class once per base, and the
parts of a backend the engine derives from the base's own (schema editor,
creation class).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ._setup import SetupAwareSchemaEditor

_built: dict[tuple[type[Any], type[Any]], type[Any]] = {}
_built_lock = threading.Lock()


def resolve_base(base: type[Any] | str) -> type[Any]:
    """The ``DatabaseWrapper`` class of ``base``: a class, or a backend's
    ``ENGINE`` path (``"django.contrib.gis.db.backends.postgis"``).

    Raises ``ImproperlyConfigured`` naming ``base`` when it cannot be imported
    or is not derived from Django's PostgreSQL backend.
    """
    if isinstance(base, str):
        try:
            module = importlib.import_module(f"{base}.base")
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"django_pg_real_pool cannot compose with backend {base!r}: importing "
                f"{base}.base failed ({exc}). Install the package that provides it."
            ) from exc
        wrapper = getattr(module, "DatabaseWrapper", None)
        if not isinstance(wrapper, type):
            raise ImproperlyConfigured(
                f"django_pg_real_pool cannot compose with backend {base!r}: "
                f"{base}.base has no DatabaseWrapper class."
            )
        base = wrapper
    from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper

    if not isinstance(base, type) or not issubclass(base, PGWrapper):
        name = f"{getattr(base, '__module__', '?')}.{getattr(base, '__qualname__', base)}"
        raise ImproperlyConfigured(
            f"django_pg_real_pool cannot compose with {name}: it is not derived from "
            "Django's PostgreSQL backend (django.db.backends.postgresql.base.DatabaseWrapper). "
            "The release mechanism needs psycopg 3 connections from a PostgreSQL wrapper; "
            "use that backend's ENGINE without django_pg_real_pool."
        )
    return base


def schema_editor_class(base: type[Any]) -> type[Any]:
    """``base``'s schema editor, invalidating the connection set-up after DDL
    that changes types (see ``_setup.py``)."""
    editor = base.SchemaEditorClass
    if issubclass(editor, SetupAwareSchemaEditor):
        return editor  # type: ignore[no-any-return]
    return type(editor.__name__, (SetupAwareSchemaEditor, editor), {"__module__": __name__})


def build(mixin: type[Any], base: type[Any], attrs: dict[str, Any] | None = None) -> type[Any]:
    """``class DatabaseWrapper(mixin, base)``, built once per pair.

    Django creates wrappers per thread and alias: one class per base keeps
    ``isinstance`` checks, class-level caches (PostGIS' type infos) and the
    garbage collector happy.
    """
    key = (mixin, base)
    with _built_lock:
        cls = _built.get(key)
        if cls is None:
            namespace: dict[str, Any] = {
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
                "__doc__": f"{base.__module__}.{base.__qualname__} with {mixin.__name__}.",
                "SchemaEditorClass": schema_editor_class(base),
                **(attrs or {}),
            }
            cls = _built[key] = type(base.__name__, (mixin, base), namespace)
        return cls
