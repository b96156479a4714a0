"""The engine's own settings, read once per wrapper from ``OPTIONS["real_pool"]``.

The engine removes that key from the connection parameters
(``LeaseMixin.get_connection_params``): Django passes unknown ``OPTIONS`` keys
on to ``psycopg.connect()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from ._replay_sql import ReplayRules

OPTIONS_KEY = "real_pool"

SessionStatePolicy = Literal["pin", "error", "ignore"]
_POLICIES = ("pin", "error", "ignore")
PoolerMode = Literal["detect", "transaction", "off"]
_POOLER_MODES = ("detect", "transaction", "off")


@dataclasses.dataclass(frozen=True)
class RealPoolSettings:
    """Validated ``OPTIONS["real_pool"]`` of one alias."""

    #: What to do with a statement that leaves session state outside ``pinned()``.
    session_state: SessionStatePolicy = "pin"
    #: With ``CONN_HEALTH_CHECKS``, a connection idle longer than this (seconds)
    #: is checked with a round trip before it is handed out.
    health_check_idle: float = 10.0
    #: Report a connection held outside ``atomic()``/``pinned()`` longer than
    #: this (seconds), with the stack that acquired it. ``None``: off.
    leak_threshold: float | None = None
    #: A transaction-mode pooler (PgBouncer) in front: ``"detect"`` asks each
    #: new physical connection once, ``"transaction"`` assumes one, ``"off"``
    #: (direct, or a session-mode pooler) never checks. See ``_pooler.py``.
    pooler: PoolerMode = "detect"
    #: Credentials read at each new physical connection: a callable or its
    #: dotted path, ``f(alias) -> password | {"user": ..., "password": ...}``.
    #: See ``_credentials.py``.
    credentials: Any = None
    #: Session statements recorded into the session context instead of
    #: pinning (``["search_path", "role", "app.*"]``; see ``_replay_sql.py``).
    replay: ReplayRules | None = None


def _number(alias: str, key: str, value: Any, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        expected = "a number of seconds >= 0" + (" or None" if allow_none else "")
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}][{key!r}] is {value!r}; "
            f"set it to {expected}."
        )
    return float(value)


def parse_settings(alias: str, options: Mapping[str, Any]) -> RealPoolSettings:
    """Validate ``options[OPTIONS_KEY]`` and return it as a dataclass."""
    raw = options.get(OPTIONS_KEY) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}] is {raw!r}; set it to a "
            "dict such as {'session_state': 'pin'}."
        )
    known = {f.name for f in dataclasses.fields(RealPoolSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}] has unknown key(s) "
            f"{unknown}; the known keys are {sorted(known)}."
        )
    policy = raw.get("session_state", "pin")
    if policy not in _POLICIES:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}]['session_state'] is "
            f"{policy!r}; set it to one of {list(_POLICIES)}."
        )
    idle = _number(alias, "health_check_idle", raw.get("health_check_idle", 10.0), allow_none=False)
    leak = _number(alias, "leak_threshold", raw.get("leak_threshold"), allow_none=True)
    assert idle is not None
    pooler = raw.get("pooler", "detect")
    if pooler not in _POOLER_MODES:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}]['pooler'] is {pooler!r}; "
            f"set it to one of {list(_POOLER_MODES)}."
        )
    credentials = raw.get("credentials")
    if credentials is not None and not (callable(credentials) or isinstance(credentials, str)):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}]['credentials'] is "
            f"{credentials!r}; set it to a callable or its dotted path, "
            "f(alias) -> password or {'user': ..., 'password': ...}."
        )
    from ._replay_sql import parse_option

    return RealPoolSettings(
        replay=parse_option(alias, raw.get("replay")),
        session_state=policy,
        health_check_idle=idle,
        leak_threshold=leak,
        pooler=pooler,
        credentials=credentials,
    )
