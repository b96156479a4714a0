"""The session context: the tenant, role and settings a piece of code runs with.

:func:`session_context` puts values for an alias into a ``ContextVar``; every
connection the code borrows while they are in effect gets them applied before
its first statement (``_replay.py``). A ``ContextVar`` follows the code into
``asgiref.sync_to_async`` and into ``contextvars.copy_context().run()``, and a
plain ``threading.Thread`` starts without it: the values follow the code, not
the thread, and never the physical connection.

The variable holds ``None`` (nothing set anywhere: the borrow path then costs
one ``ContextVar.get()``) or an immutable mapping alias -> :class:`AliasContext`.
Every change builds a new mapping (copy on write), so a value a borrow read
never changes under it and a ``Token.reset()`` restores the outer one exactly.

Two layers per alias, last writer wins between them:

* ``explicit``: what ``session_context()`` blocks set; it ends with the block;
* ``recorded``: what a ``SET``/``set_config()`` statement set under the
  ``OPTIONS["real_pool"]["replay"]`` option (``_replay_sql.py``); it lives as
  long as a pin would, until ``connection.close()`` (the end of the request or
  task, see :func:`drop_recorded`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._lease import LeaseMixin

__all__ = ["session_context"]

F = TypeVar("F", bound=Callable[..., Any])

#: The keys for ``search_path`` and the current role (``SET ROLE``).
SEARCH_PATH = "search_path"
ROLE = "role"

# A run-time parameter's name: a plain one (statement_timeout) or a custom one
# with a prefix (app.tenant_id). Names the server checks for us are compared
# lowercased, as PostgreSQL compares them.
_NAME = re.compile(r"[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)*\Z")
# Settings only the server's own machinery may change (session_context's
# role= argument covers the current role; its default is Django's assume_role).
_FORBIDDEN = frozenset({"session_authorization", "transaction_isolation", "transaction_read_only"})

Values = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class AliasContext:
    """One alias's context: what the code asked for, and what a borrow applies.

    In both layers a value of ``None`` means "the server's default" (it hides
    an outer value). :attr:`wanted` is the merge, without defaults, sorted:
    the form a physical connection's applied state is compared with.
    """

    explicit: Mapping[str, str | None]
    recorded: Mapping[str, str | None]
    wanted: Values | None

    @classmethod
    def build(
        cls, explicit: Mapping[str, str | None], recorded: Mapping[str, str | None]
    ) -> AliasContext | None:
        if not explicit and not recorded:
            return None
        merged = {**explicit, **recorded}
        wanted = tuple(sorted((k, v) for k, v in merged.items() if v is not None)) or None
        return cls(MappingProxyType(dict(explicit)), MappingProxyType(dict(recorded)), wanted)


#: alias -> AliasContext; None when no alias has a context (the common case).
current: ContextVar[Mapping[str, AliasContext] | None] = ContextVar(
    "django_pg_real_pool_session_context", default=None
)


def wanted(alias: str) -> Values | None:
    """What a connection borrowed now for ``alias`` must carry (None: defaults)."""
    contexts = current.get()
    if contexts is None:
        return None
    entry = contexts.get(alias)
    return None if entry is None else entry.wanted


def _replace(alias: str, entry: AliasContext | None) -> Token[Mapping[str, AliasContext] | None]:
    contexts = dict(current.get() or {})
    if entry is None:
        contexts.pop(alias, None)
    else:
        contexts[alias] = entry
    return current.set(MappingProxyType(contexts) if contexts else None)


def _entry(alias: str) -> AliasContext | None:
    contexts = current.get()
    return None if contexts is None else contexts.get(alias)


def record(alias: str, values: Mapping[str, str | None]) -> None:
    """Values set by a statement under the ``replay`` option (``None``: reset)."""
    entry = _entry(alias)
    explicit = entry.explicit if entry is not None else {}
    recorded = {**(entry.recorded if entry is not None else {}), **values}
    _replace(alias, AliasContext.build(explicit, recorded))


def drop_recorded(alias: str) -> None:
    """``connection.close()``: what statements recorded ends with the request
    or task, as a pin does; what ``session_context()`` blocks set stays."""
    entry = _entry(alias)
    if entry is not None and entry.recorded:
        _replace(alias, AliasContext.build(entry.explicit, {}))


def snapshot() -> Mapping[str, AliasContext] | None:
    """The whole context now (for the task bracket to restore)."""
    return current.get()


def restore(before: Mapping[str, AliasContext] | None) -> dict[str, str]:
    """Put the context back to ``before``; return, per alias, the leak report's
    problem for the explicit values left set since (a ``session_context``
    entered and never exited). Recorded values end silently: they end at
    ``close()`` anyway."""
    now = current.get()
    if now is before:
        return {}
    left: dict[str, str] = {}
    for alias, entry in (now or {}).items():
        outer = (before or {}).get(alias)
        if entry.explicit and (outer is None or outer.explicit != entry.explicit):
            values = ", ".join(f"{k}={v!r}" for k, v in sorted(entry.explicit.items()))
            left[alias] = f"session_context() left entered ({values})"
    current.set(before)
    return left


# -- the public API -------------------------------------------------------------


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _search_path(value: object) -> str:
    if isinstance(value, str):
        if not value.strip() or "\x00" in value:
            raise ValueError(
                f"session_context(search_path={value!r}): give schema names, e.g. "
                "search_path=['tenant_1', 'public'] or 'tenant_1, public'."
            )
        return value
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        names = list(value)
        if names and all(isinstance(n, str) and n and "\x00" not in n for n in names):
            # Quoted: a schema name is used as written, whatever its case.
            return ", ".join(_quote_ident(n) for n in names)
    raise TypeError(
        f"session_context(search_path={value!r}): pass a list of schema names "
        "(['tenant_1', 'public']) or the path as SET would take it ('tenant_1, public')."
    )


def _setting_value(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"session_context(settings={{{name!r}: ...}}): NUL in the value")
        return value
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError(
        f"session_context(settings={{{name!r}: {value!r}}}): a setting's value must be a "
        f"str, int, float, bool or None (the server's default), not {type(value).__name__}."
    )


def check_name(name: object, where: str) -> str:
    """``name`` as a valid run-time parameter name, lowercased; raise if not."""
    if not isinstance(name, str) or not _NAME.match(name.lower()) or name.lower() in _FORBIDDEN:
        raise ValueError(
            f"{where}: {name!r} is not a setting name this can set. Use a run-time "
            "parameter such as 'statement_timeout' or a custom one with a prefix such as "
            "'app.tenant_id' (letters, digits, '_', '$'; pass the role with role=)."
        )
    return name.lower()


def _values(search_path: object, role: object, settings: object) -> dict[str, str | None]:
    """Validate ``session_context()``'s arguments into one mapping."""
    values: dict[str, str | None] = {}
    if settings is not None:
        if not isinstance(settings, Mapping):
            raise TypeError(
                f"session_context(settings={settings!r}): pass a dict of setting name -> "
                "value, e.g. {'app.tenant_id': '42'}."
            )
        for name, value in settings.items():
            key = check_name(name, "session_context(settings=...)")
            values[key] = (
                _search_path(value)
                if key == SEARCH_PATH and value is not None
                else _setting_value(key, value)
            )
    if search_path is not None:
        values[SEARCH_PATH] = _search_path(search_path)
    if role is not None:
        if not isinstance(role, str) or not role or "\x00" in role:
            raise TypeError(
                f"session_context(role={role!r}): pass the role's name as a non-empty str."
            )
        values[ROLE] = role
    return values


def _wrapper(using: str, values: Mapping[str, str | None]) -> LeaseMixin:
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    from ._lease import LeaseMixin
    from ._tenants import TenantsMixin

    wrapper = connections[using]
    if not isinstance(wrapper, LeaseMixin) or not wrapper.lease_pooled():
        raise ImproperlyConfigured(
            f"session_context(using={using!r}): DATABASES[{using!r}] is not a pooled alias "
            "of django_pg_real_pool (its ENGINE, or OPTIONS['pool'] = False); the context "
            "is applied when such an alias borrows a connection."
        )
    if SEARCH_PATH in values and isinstance(wrapper, TenantsMixin):
        raise ImproperlyConfigured(
            f"session_context(using={using!r}, search_path=...): DATABASES[{using!r}] is a "
            "django-tenants engine, which sets search_path itself before each query. Set "
            "the tenant with connection.set_tenant(); pass other values here."
        )
    return wrapper


class session_context:  # noqa: N801 - used like contextlib's context managers
    """Run the enclosed code with these session values on ``using``'s connections.

    As a context manager (``with session_context(settings={"app.tenant_id": "7"}):``)
    or a decorator (one context per call). Every connection the code borrows
    for ``using`` inside it, on any thread or ``sync_to_async`` call that
    carries its ``contextvars`` context, runs with exactly these values, and
    one borrowed outside it with the server's defaults: the engine applies
    the difference at the borrow, in one round trip, or none when the
    connection already carries them. A connection held when the block is
    entered or left (inside ``atomic()``, ``pinned()``) gets them at once.

    * ``search_path``: a list of schema names (quoted, used as written) or a
      string as ``SET search_path`` takes it;
    * ``role``: a role to ``SET ROLE`` to (the default: Django's
      ``OPTIONS["assume_role"]``, or the login role);
    * ``settings``: run-time parameters, name -> str/int/float/bool, or
      ``None`` for the server's default (hides an outer block's value).

    Nested blocks override the outer values they name and keep the others.
    One instance may be entered again while entered (nesting), by one thread
    at a time; the decorator makes a block per call, safe anywhere.
    Bad names and values raise ``TypeError``/``ValueError`` at the call; an
    unknown role or a value the server rejects fails the first query (see
    :class:`~django_pg_real_pool.SessionContextError`).
    """

    def __init__(
        self,
        using: str = "default",
        *,
        search_path: str | Iterable[str] | None = None,
        role: str | None = None,
        settings: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> None:
        if not isinstance(using, str):
            raise TypeError(f"session_context(using={using!r}): pass a database alias (a str).")
        self.using = using
        self.values = _values(search_path, role, settings)
        self._tokens: list[Token[Mapping[str, AliasContext] | None]] = []

    def __enter__(self) -> session_context:
        from . import _replay

        wrapper = _wrapper(self.using, self.values)
        entry = _entry(self.using)
        explicit = {**(entry.explicit if entry is not None else {}), **self.values}
        # Last writer wins: a key this block names hides a recorded one.
        recorded = {
            k: v
            for k, v in (entry.recorded if entry is not None else {}).items()
            if k not in self.values
        }
        token = _replace(self.using, AliasContext.build(explicit, recorded))
        try:
            _replay.apply_held(wrapper)
        except BaseException:
            current.reset(token)
            raise
        self._tokens.append(token)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from . import _replay

        current.reset(self._tokens.pop())
        _replay.apply_held(_wrapper(self.using, self.values))

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapped(*args: Any, **kwargs: Any) -> Any:
                with session_context(self.using, settings=self.values):
                    return await func(*args, **kwargs)

            return awrapped  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            # A new block per call: threads and recursion never share tokens.
            with session_context(self.using, settings=self.values):
                return func(*args, **kwargs)

        return wrapped  # type: ignore[return-value]
