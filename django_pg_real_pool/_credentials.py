"""Credentials read at each new physical connection (rotating passwords,
IAM-style tokens that expire).

``OPTIONS["real_pool"]["credentials"]`` is a callable, or its dotted path,
called as ``f(alias)`` every time a pool opens a connection, on both engines;
it returns the password (a ``str``) or a mapping with ``"password"`` and/or
``"user"``, which take the place of ``PASSWORD``/``USER``. Connections already
open keep working (the server checks credentials at connection time only), so
a token only has to be valid when it is used to connect.

A failing callable fails that connection attempt as a connection error
(``psycopg.OperationalError``, chained): the pool retries and, if no attempt
succeeds within its timeout, the borrow ends in ``PoolExhausted`` saying
connection attempts failed. Nothing is logged of what the callable returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ._settings import OPTIONS_KEY, parse_settings

_KEYS = frozenset({"user", "password"})


def credentials_source(alias: str, settings_dict: Mapping[str, Any]) -> _Fresh | None:
    """What to merge into the connection parameters at each new connection,
    or None when the alias has no ``credentials`` setting."""
    setting = f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}]['credentials']"
    value = parse_settings(alias, settings_dict.get("OPTIONS", {})).credentials
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{setting} is {value!r}, which cannot be imported ({exc}); set it to the "
                "dotted path of a callable, f(alias) -> password or "
                "{'user': ..., 'password': ...}."
            ) from exc
        if not callable(value):
            raise ImproperlyConfigured(f"{setting} names {value!r}, which is not callable.")
    return _Fresh(alias, setting, value)


class _Fresh:
    """Calls the user's callable and checks what it returns."""

    __slots__ = ("alias", "function", "setting")

    def __init__(self, alias: str, setting: str, function: Callable[[str], Any]) -> None:
        self.alias = alias
        self.setting = setting
        self.function = function

    def __call__(self) -> dict[str, Any]:
        try:
            found = self.function(self.alias)
        except Exception as exc:
            raise psycopg.OperationalError(
                f"database alias {self.alias!r}: {self.setting} raised "
                f"{type(exc).__name__}; no connection could be opened"
            ) from exc
        if isinstance(found, str):
            return {"password": found}
        if isinstance(found, Mapping) and found and set(found) <= _KEYS:
            return dict(found)
        raise ImproperlyConfigured(
            f"{self.setting} returned a {type(found).__name__}; it must return the password "
            "(a str) or a dict with 'password' and/or 'user'."
        )


def pool_kwargs(
    alias: str, settings_dict: Mapping[str, Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``psycopg_pool.ConnectionPool(kwargs=...)``: with a credentials source,
    which ``PooledConnection.connect()`` calls at each new connection."""
    fresh = credentials_source(alias, settings_dict)
    if fresh is None:
        return kwargs
    from ._pools import CREDENTIALS

    return {**kwargs, CREDENTIALS: fresh}
