"""Django system checks (``manage.py check``) for aliases on this package's engines.

Two ways in:

* with ``"django_pg_real_pool"`` in ``INSTALLED_APPS``, :func:`check_databases`
  and :func:`check_integrations` run on every ``manage.py check`` (and
  ``runserver``/``migrate`` start-up), tagged ``django_pg_real_pool``;
* without the app, the engines' ``DatabaseWrapper.validation`` is
  :class:`DatabaseValidation`, which Django runs for the aliases named with
  ``manage.py check --database <alias>``.

Ids are stable (``django_pg_real_pool.E001``...); each hint names the fix.
The task runners' checks (dramatiq ``E101``..., Celery ``W201``, huey
``W301``, RQ ``W401``, Django Tasks ``W501``) are in ``_checks_runners.py``
and run from :func:`check_integrations`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import Any

from django.core.checks import CheckMessage, Error, Warning
from django.db.backends.base.validation import BaseDatabaseValidation

from ._engines import pool_kind
from ._settings import OPTIONS_KEY

TAG = "django_pg_real_pool"

#: A pool timeout above this (seconds) outlasts a typical web request: the
#: front server kills the request before the pool's clear error shows.
TYPICAL_REQUEST_SECONDS = 10.0
#: Pool timeouts when the settings give none (psycopg_pool, django-db-connection-pool).
DEFAULT_POOL_TIMEOUT = 30.0
#: PgBouncer's default port.
PGBOUNCER_PORT = 6432
#: Keys the native engine supplies to ``psycopg_pool.ConnectionPool`` itself
#: (refused by this check and by ``_validate.pool_options_of`` at first use).
ENGINE_POOL_KEYS = ("configure", "connection_class", "kwargs", "reset")


def _id(code: str) -> str:
    return f"{TAG}.{code}"


def check_alias(alias: str, settings_dict: Mapping[str, Any]) -> list[CheckMessage]:
    """Every per-alias check for one ``DATABASES`` entry (other engines: none).

    The alias is checked when its ENGINE is one of this package's (composed
    and subclass engines included), against the pool that engine uses.
    """
    kind = pool_kind(settings_dict)
    if kind is None:
        return []
    engine = settings_dict.get("ENGINE")
    obj = f"DATABASES[{alias!r}]"
    options: Mapping[str, Any] = settings_dict.get("OPTIONS") or {}
    messages: list[CheckMessage] = []
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if max_age != 0:
        messages.append(
            Error(
                f"CONN_MAX_AGE is {max_age!r}; {engine} returns connections to its pool "
                "after each query and the pool keeps them open.",
                hint=f"Set {obj}['CONN_MAX_AGE'] = 0 (persistent connections would hold "
                "one connection per thread, the opposite of pooling).",
                obj=obj,
                id=_id("E001"),
            )
        )
    if kind == "native":
        messages.extend(_check_native_pool(alias, obj, options))
    else:
        messages.extend(_check_queuepool(obj, settings_dict, options))
    messages.extend(_check_real_pool_options(alias, obj, options))
    if settings_dict.get("AUTOCOMMIT", True) is False:
        messages.append(
            Warning(
                "AUTOCOMMIT is False: every connection starts a transaction at once, so "
                "it is held until commit or rollback, as with the stock pool.",
                hint=f"Remove {obj}['AUTOCOMMIT'] = False and use transaction.atomic() "
                "where a transaction is needed; connections then go back after each query.",
                obj=obj,
                id=_id("W002"),
            )
        )
    messages.extend(_check_pooler(obj, settings_dict, options))
    return messages


def _check_native_pool(alias: str, obj: str, options: Mapping[str, Any]) -> list[CheckMessage]:
    if "pool" not in options:
        return [
            Error(
                "OPTIONS has no 'pool': the django_pg_real_pool engine lends connections "
                "from Django's native psycopg_pool pool.",
                hint=f"Add \"pool\": {{'min_size': 2, 'max_size': 10, 'timeout': 10}} to "
                f"{obj}['OPTIONS'] (or \"pool\": True for psycopg_pool's defaults).",
                obj=obj,
                id=_id("E002"),
            )
        ]
    pool = options["pool"]
    if pool is False:
        return [
            Warning(
                "OPTIONS['pool'] is False: this alias runs without a pool and holds its "
                "connection like Django's stock backend.",
                hint=f"Set {obj}['OPTIONS']['pool'] to a dict of pool sizes to release "
                "connections per query, or use ENGINE 'django.db.backends.postgresql'.",
                obj=obj,
                id=_id("W006"),
            )
        ]
    if pool is True:
        pool = {}
    if not isinstance(pool, Mapping):
        return [
            Error(
                f"OPTIONS['pool'] is {pool!r}, not True or a dict.",
                hint=f"Set {obj}['OPTIONS']['pool'] to True or to psycopg_pool.ConnectionPool "
                "arguments such as {'min_size': 2, 'max_size': 10, 'timeout': 10}.",
                obj=obj,
                id=_id("E002"),
            )
        ]
    messages: list[CheckMessage] = []
    min_size, max_size = pool.get("min_size", 4), pool.get("max_size")
    if max_size is None:
        max_size = min_size
    if isinstance(min_size, int) and isinstance(max_size, int) and min_size > max_size:
        messages.append(
            Error(
                f"OPTIONS['pool'] has min_size={min_size} > max_size={max_size} "
                "(psycopg_pool defaults: min_size 4, max_size = min_size).",
                hint=f"Make {obj}['OPTIONS']['pool']['min_size'] <= 'max_size'.",
                obj=obj,
                id=_id("E003"),
            )
        )
    forbidden = sorted(set(ENGINE_POOL_KEYS) & set(pool))
    if forbidden:
        messages.append(
            Error(
                f"OPTIONS['pool'] sets {forbidden}, which the engine supplies itself "
                "(per-connection set-up, session reset).",
                hint=f"Remove {forbidden} from {obj}['OPTIONS']['pool']; the engine's own "
                f"settings are in {obj}['OPTIONS']['{OPTIONS_KEY}'].",
                obj=obj,
                id=_id("E006"),
            )
        )
    timeout = pool.get("timeout", DEFAULT_POOL_TIMEOUT)
    messages.extend(_check_timeout(obj, timeout, f"{obj}['OPTIONS']['pool']['timeout']"))
    return messages


def _check_queuepool(
    obj: str, settings_dict: Mapping[str, Any], options: Mapping[str, Any]
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if "pool" in options:
        messages.append(
            Error(
                "OPTIONS has 'pool', but ENGINE 'django_pg_real_pool.dj_db_conn_pool' pools "
                "with SQLAlchemy's QueuePool.",
                hint=f"Move the sizes to {obj}['POOL_OPTIONS'] ({{'POOL_SIZE': 10, "
                "'MAX_OVERFLOW': 0, 'TIMEOUT': 10}}), or use ENGINE 'django_pg_real_pool'.",
                obj=obj,
                id=_id("E004"),
            )
        )
    pool_options: Mapping[str, Any] = settings_dict.get("POOL_OPTIONS") or {}
    timeout = pool_options.get("TIMEOUT", DEFAULT_POOL_TIMEOUT)
    messages.extend(_check_timeout(obj, timeout, f"{obj}['POOL_OPTIONS']['TIMEOUT']"))
    return messages


def _check_timeout(obj: str, timeout: Any, setting: str) -> list[CheckMessage]:
    if not isinstance(timeout, (int, float)) or timeout <= TYPICAL_REQUEST_SECONDS:
        return []
    return [
        Warning(
            f"The pool timeout is {timeout:g}s, longer than a typical request: a request "
            "waiting that long for a connection is usually killed by the front server first "
            "(gunicorn's default timeout is 30s), so the pool's PoolExhausted error, which "
            "names the cause, never shows.",
            hint=f"Set {setting} to a few seconds (e.g. 5); if this alias serves only "
            f"background workers, silence {_id('W001')} in SILENCED_SYSTEM_CHECKS.",
            obj=obj,
            id=_id("W001"),
        )
    ]


def _check_real_pool_options(
    alias: str, obj: str, options: Mapping[str, Any]
) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    from ._settings import parse_settings

    try:
        parse_settings(alias, options)
    except ImproperlyConfigured as exc:
        return [
            Error(
                f"OPTIONS['{OPTIONS_KEY}'] is invalid: {exc}",
                hint=f"Fix {obj}['OPTIONS']['{OPTIONS_KEY}'] as the message says.",
                obj=obj,
                id=_id("E005"),
            )
        ]
    return []


def _check_pooler(
    obj: str, settings_dict: Mapping[str, Any], options: Mapping[str, Any]
) -> list[CheckMessage]:
    """A transaction-mode pooler (PgBouncer) in front of this engine.

    Such a pooler may hand each transaction to a different server session, so
    whatever outlives a transaction breaks: cursors declared WITH HOLD (what
    ``QuerySet.iterator()`` uses in autocommit), named prepared statements
    (psycopg prepares a query after ``prepare_threshold`` runs), and every kind
    of session state, even on a connection this engine keeps (``pinned()``).
    ``DISABLE_SERVER_SIDE_CURSORS = True`` is the setting Django asks for
    behind such a pooler, so it is read as the sign that one is there.
    """
    messages: list[CheckMessage] = []
    disabled = settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False) is True
    if not disabled:
        if _looks_like_pgbouncer(settings_dict):
            messages.append(
                Warning(
                    f"PORT/HOST look like PgBouncer ({settings_dict.get('HOST')!r}:"
                    f"{settings_dict.get('PORT')!r}) but DISABLE_SERVER_SIDE_CURSORS is not "
                    "True: in transaction pooling mode, QuerySet.iterator() cursors (declared "
                    "WITH HOLD) break.",
                    hint=f"Set {obj}['DISABLE_SERVER_SIDE_CURSORS'] = True if PgBouncer runs "
                    "in transaction mode; or connect this engine to PostgreSQL directly "
                    "(it already returns connections after each query).",
                    obj=obj,
                    id=_id("W003"),
                )
            )
        return messages
    settings = options.get(OPTIONS_KEY) or {}
    policy = settings.get("session_state", "pin") if isinstance(settings, Mapping) else None
    if policy in ("pin", "ignore"):
        messages.append(
            Warning(
                "DISABLE_SERVER_SIDE_CURSORS is True, the setting for a transaction-mode "
                f"pooler, and session_state is {policy!r}: behind such a pooler a SET, a temp "
                "table or a session advisory lock does not survive the transaction, even "
                "on a connection this engine keeps (pinned()).",
                hint=f"Set {obj}['OPTIONS']['{OPTIONS_KEY}']['session_state'] = 'error' so "
                "such statements fail loudly (use SET LOCAL inside atomic() instead). If no "
                "transaction-mode pooler is in front, remove DISABLE_SERVER_SIDE_CURSORS: "
                "this engine keeps server-side cursors working.",
                obj=obj,
                id=_id("W004"),
            )
        )
    # Django turns psycopg's prepared statements off unless OPTIONS asks.
    threshold = options.get("prepare_threshold")
    if threshold is not None:
        messages.append(
            Warning(
                "DISABLE_SERVER_SIDE_CURSORS is True, the setting for a transaction-mode "
                f"pooler, and OPTIONS['prepare_threshold'] is {threshold!r}: psycopg prepares "
                "repeated statements, and "
                "behind PgBouncer before 1.21, or without max_prepared_statements, they fail "
                "with 'prepared statement ... does not exist'.",
                hint=f"Remove {obj}['OPTIONS']['prepare_threshold'] (Django's default, None, "
                "turns preparing off), or enable "
                "max_prepared_statements in PgBouncer >= 1.21. If no transaction-mode pooler "
                "is in front, remove DISABLE_SERVER_SIDE_CURSORS.",
                obj=obj,
                id=_id("W005"),
            )
        )
    return messages


def _looks_like_pgbouncer(settings_dict: Mapping[str, Any]) -> bool:
    port = str(settings_dict.get("PORT") or "").strip()
    host = str(settings_dict.get("HOST") or "").lower()
    return port == str(PGBOUNCER_PORT) or "pgbouncer" in host


class DatabaseValidation(BaseDatabaseValidation):
    """The engines' ``validation_class``: ``manage.py check --database <alias>``
    runs the per-alias checks even when the app is not installed."""

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        from django.apps import apps

        wrapper = self.connection
        if apps.is_installed(TAG):
            # The app's own check (check_databases) already covers this alias.
            return list(super().check(**kwargs))
        return [*super().check(**kwargs), *check_alias(wrapper.alias, wrapper.settings_dict)]


def check_databases(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Per-alias checks of every alias on this package's engines (the app's check).

    :class:`DatabaseValidation` stays silent for these aliases when the app is
    installed, so a message never shows twice.
    """
    from django.db import connections

    messages: list[CheckMessage] = []
    for alias, settings_dict in connections.settings.items():
        messages.extend(check_alias(alias, settings_dict))
    return messages


def check_integrations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The task runners' checks (``_checks_runners``), when their runner is installed.

    A runner's check runs only when its queue package is importable.
    """
    from ._checks_runners import RUNNER_CHECKS

    messages: list[CheckMessage] = []
    for module_name, requirement, check in RUNNER_CHECKS:
        if importlib.util.find_spec(requirement) is None:
            continue
        try:
            messages.extend(check())
        except ModuleNotFoundError as exc:
            messages.append(
                Warning(
                    f"{module_name} could not be imported ({exc}); its checks did not run.",
                    hint="Install what it needs: "
                    f"pip install 'django-pg-real-pool[{requirement}]'.",
                    id=_id("W007"),
                )
            )
    return messages
