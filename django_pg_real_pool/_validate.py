"""Validation of the DATABASES entry shared by both engines.

Errors name the setting, the value found and the fix, and are raised at first
use of the alias, as Django does for its own backend settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.psycopg_any import IsolationLevel

from .checks import ENGINE_POOL_KEYS

logger = logging.getLogger("django_pg_real_pool")


def check_conn_max_age(alias: str, settings_dict: Mapping[str, Any]) -> None:
    """Persistent connections contradict per-query release."""
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if max_age != 0:
        raise ImproperlyConfigured(
            "Pooling doesn't support persistent connections. "
            f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is {max_age!r}: django_pg_real_pool "
            "returns the connection to the pool after each query and the pool keeps it "
            "open, so set CONN_MAX_AGE to 0."
        )


def pool_options_of(alias: str, settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``OPTIONS["pool"]`` as ``psycopg_pool.ConnectionPool`` keyword arguments."""
    options = settings_dict["OPTIONS"]
    if "pool" not in options:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'] has no 'pool': the django_pg_real_pool "
            "engine lends connections from Django's native pool. Add "
            "\"pool\": {'min_size': 2, 'max_size': 10} (or True) to OPTIONS."
        )
    pool = options["pool"]
    if pool is True:
        return {}
    if not isinstance(pool, Mapping):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] is {pool!r}; set it to True or to a "
            "dict of psycopg_pool.ConnectionPool arguments such as "
            "{'min_size': 2, 'max_size': 10, 'timeout': 10}."
        )
    # A "check" of the user's is kept, as Django 6 keeps it: psycopg_pool runs
    # it when it lends a connection (see the README's "Health checks").
    forbidden = sorted(set(ENGINE_POOL_KEYS) & set(pool))
    if forbidden:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] sets {forbidden}: the engine supplies "
            "these itself (per-connection set-up, session reset). Remove them; use "
            "OPTIONS['real_pool'] for the engine's own settings."
        )
    min_size = pool.get("min_size", 4)
    max_size = pool.get("max_size")
    if max_size is not None and min_size > max_size:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] has min_size={min_size} > "
            f"max_size={max_size}; make min_size <= max_size."
        )
    return dict(pool)


def resolve_isolation_level(options: Mapping[str, Any]) -> IsolationLevel:
    """The isolation level Django would use, validated as Django does."""
    value = options.get("isolation_level")
    if value is None:
        return IsolationLevel.READ_COMMITTED
    try:
        return IsolationLevel(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"Invalid transaction isolation level {value} specified. Use one of the "
            "psycopg.IsolationLevel values (DATABASES[...]['OPTIONS']['isolation_level'])."
        ) from None


_warned_no_pool: set[str] = set()


def warn_no_pool(alias: str) -> None:
    """Once per alias and process: connect() asks at every connection."""
    if alias not in _warned_no_pool:
        _warned_no_pool.add(alias)
        logger.warning(
            "DATABASES[%r]['OPTIONS']['pool'] is False: this alias runs without a "
            "pool and holds its connection like Django's stock backend.",
            alias,
        )


# What names the database a connection reaches (with OPTIONS["service"]).
_IDENTITY_KEYS = ("NAME", "HOST", "PORT", "USER")


def differs_from_alias(alias: str, settings_dict: dict[str, Any]) -> bool:
    """Whether ``settings_dict`` reaches another database than ``alias``'s own.

    The pool is shared per alias. A wrapper made with the alias's name but
    other settings (Django's ``_nodb_cursor()`` falls back to
    ``DatabaseWrapper({**settings, "NAME": <another database>}, alias)``) must
    not borrow from it, nor create it from its own settings: every later
    borrower of the alias would reach that other database.
    """
    from django.db import connections

    configured = connections.settings.get(alias)
    if configured is None or configured is settings_dict:
        return False
    return any(configured.get(k) != settings_dict.get(k) for k in _IDENTITY_KEYS) or (
        configured.get("OPTIONS", {}).get("service") != settings_dict["OPTIONS"].get("service")
    )
