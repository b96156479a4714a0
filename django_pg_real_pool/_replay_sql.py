"""The ``replay`` option: session statements that become session context.

``OPTIONS["real_pool"]["replay"] = ["search_path", "role", "app.*"]`` names
what existing code may set with plain SQL outside ``pinned()``. Such a
statement, instead of pinning the connection (``_session_policy.py``), is
recorded into the caller's session context (``_context.record``) and
replayed on every later borrow in that context, until ``connection.close()``
ends the request or task. The forms understood:

* ``SET [SESSION] name {TO | =} value[, ...] | DEFAULT``, ``SET [SESSION] ROLE
  name | NONE``;
* ``RESET name``, ``RESET ROLE``; ``RESET ALL`` clears the replayed keys, and
  the connection, whose other settings (Django's time zone) it reset too,
  keeps today's policy;
* ``SELECT set_config(name, value, false)[, set_config(...)]``, each argument
  a string literal or a ``%s``/``%(name)s`` parameter whose value is a str
  (``None``: reset).

Anything else (casts, other functions in the statement, ``SET SCHEMA``, a
name the option does not list) keeps today's policy. A statement is recorded
before it runs: if the server rejects it, the context still holds the value,
and the next borrow's apply fails with a clear error; a rollback does not
undo it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from . import _context, _replay
from ._context import ROLE, SEARCH_PATH

if TYPE_CHECKING:
    from ._lease import LeaseMixin


@dataclasses.dataclass(frozen=True)
class ReplayRules:
    """The validated ``replay`` option: exact names and ``prefix.*`` patterns."""

    names: frozenset[str]
    prefixes: tuple[str, ...]

    def covers(self, key: str) -> bool:
        return key in self.names or key.startswith(self.prefixes)


def parse_option(alias: str, value: Any) -> ReplayRules | None:
    """Validate ``OPTIONS["real_pool"]["replay"]`` (None or a list of names)."""
    if value is None:
        return None
    where = f"DATABASES[{alias!r}]['OPTIONS']['real_pool']['replay']"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ImproperlyConfigured(
            f"{where} is {value!r}; set it to a list such as ['search_path', 'role', 'app.*']."
        )
    names: set[str] = set()
    prefixes: list[str] = []
    for item in value:
        if isinstance(item, str) and item.endswith(".*"):
            try:
                prefixes.append(_context.check_name(item[:-2], where) + ".")
            except ValueError:
                pass
            else:
                continue
        try:
            names.add(_context.check_name(item, where))
        except ValueError:
            raise ImproperlyConfigured(
                f"{where} lists {item!r}; each entry must be 'search_path', 'role', a "
                "setting name such as 'statement_timeout', or a prefix pattern such as "
                "'app.*'."
            ) from None
    return ReplayRules(frozenset(names), tuple(prefixes)) if names or prefixes else None


# -- parsing ---------------------------------------------------------------------

_NAME = r"[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*"
_SET = re.compile(
    rf"\s*SET\s+(?:SESSION\s+)?(?P<name>{_NAME})\s*(?P<to>\bTO\b|=)?\s*(?P<value>.*?)\s*;?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)
_RESET = re.compile(rf"\s*RESET\s+(?P<name>{_NAME})\s*;?\s*\Z", re.IGNORECASE)
_TOKEN = re.compile(
    r"""\s*(?:"(?P<ident>(?:[^"]|"")*)"|'(?P<string>(?:[^']|'')*)'"""
    r"""|(?P<word>[A-Za-z_][\w$]*)|(?P<number>[-+]?\d+(?:\.\d+)?)|(?P<param>%s|%\(\w+\)s))"""
    r"""\s*(?P<comma>,)?"""
)
_ARG = r"""(?:'(?:[^']|'')*'|%s|%\(\w+\)s)"""
_CALL = rf"(?:pg_catalog\s*\.\s*)?set_config\s*\(\s*({_ARG})\s*,\s*({_ARG})\s*,\s*false\s*\)"
_SELECT = re.compile(
    rf"\s*SELECT\s+{_CALL}(?:\s*,\s*{_CALL})*\s*;?\s*\Z", re.IGNORECASE | re.DOTALL
)
_CALLS = re.compile(_CALL, re.IGNORECASE)
_BARE = re.compile(r"[a-z_][a-z0-9_]*\Z")

#: :func:`parse`'s answer for ``RESET ALL``.
RESET_ALL = "RESET ALL"


def _tokens(text: str, params: Any) -> list[tuple[str, str]] | None:
    """``SET``'s value list as (kind, text) pairs; None if not understood.

    A ``%s``/``%(name)s`` parameter (Django's client-side binding sends it
    as a literal) of type str or int is its value."""
    out: list[tuple[str, str]] = []
    pos = 0
    position = [0]
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        if match.group("ident") is not None:
            out.append(("ident", match.group("ident").replace('""', '"')))
        elif match.group("string") is not None:
            out.append(("string", match.group("string").replace("''", "'")))
        elif match.group("word") is not None:
            out.append(("word", match.group("word").lower()))
        elif match.group("number") is not None:
            out.append(("number", match.group("number")))
        else:
            value = _parameter(match.group("param"), params, position)
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                return None
            out.append(("string", str(value)))
        pos = match.end()
        if match.group("comma") is None and pos < len(text):
            return None
    return out


def _set_values(name: str, has_to: bool, text: str, params: Any) -> dict[str, str | None] | None:
    key = name.lower()
    tokens = _tokens(text, params)
    if not tokens or (not has_to and key != ROLE):
        return None
    if len(tokens) == 1 and tokens[0] == ("word", "default"):
        return {key: None}
    if key == ROLE:
        if len(tokens) != 1:
            return None
        return {key: None if tokens[0] == ("word", "none") else tokens[0][1]}
    if key == SEARCH_PATH:
        # As the server writes a list it was given: each name quoted unless plain.
        return {
            key: ", ".join(
                text if _BARE.match(text) else '"' + text.replace('"', '""') + '"'
                for _, text in tokens
            )
        }
    return {key: tokens[0][1]} if len(tokens) == 1 else None


_MISSING = object()


def _parameter(arg: str, params: Any, position: list[int]) -> Any:
    """The value of placeholder ``arg`` (``%s``: the next positional one)."""
    if arg == "%s":
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            return _MISSING
        if position[0] >= len(params):
            return _MISSING
        position[0] += 1
        return params[position[0] - 1]
    if not isinstance(params, Mapping):
        return _MISSING
    return params.get(arg[2:-2], _MISSING)


def _argument(arg: str, params: Any, position: list[int]) -> tuple[bool, str | None]:
    """(understood, value) of one ``set_config`` argument."""
    if arg.startswith("'"):
        return True, arg[1:-1].replace("''", "'")
    value = _parameter(arg, params, position)
    return (value is None or isinstance(value, str)), value


def _set_config_values(sql: str, params: Any) -> dict[str, str | None] | None:
    values: dict[str, str | None] = {}
    position = [0]
    for call in _CALLS.finditer(sql):
        ok_name, name = _argument(call.group(1), params, position)
        ok_value, value = _argument(call.group(2), params, position)
        if not (ok_name and ok_value) or name is None:
            return None
        try:
            key = _context.check_name(name, "set_config")
        except ValueError:
            return None
        values[key] = value
    return values or None


def parse(sql: str, params: Any) -> dict[str, str | None] | str | None:
    """What ``sql`` sets (name -> value, None: the default), :data:`RESET_ALL`,
    or None when it is not a form this module understands."""
    if (match := _SET.match(sql)) is not None:
        return _set_values(
            match.group("name"), match.group("to") is not None, match.group("value"), params
        )
    if (match := _RESET.match(sql)) is not None:
        name = match.group("name").lower()
        return RESET_ALL if name == "all" else {name: None}
    if _SELECT.match(sql) is not None:
        return _set_config_values(sql, params)
    return None


def record(
    wrapper: LeaseMixin, sql: Any, params: Any, rules: ReplayRules
) -> dict[str, str | None] | None:
    """Record ``sql`` into the context if ``rules`` cover all it sets.

    Returns the values recorded when the statement is handled (no pin, no
    reset needed): the connection runs it, and its keys count as unknown
    there until it succeeds (:func:`._replay.confirm`) or the next borrow
    sets them. ``None``: not handled, the session-state policy applies.
    """
    if type(sql) is not str:
        return None
    values = parse(sql, params)
    if values is None:
        return None
    if values == RESET_ALL:
        # The keys this context replays go back to the defaults; the
        # statement reset the connection's configuration too: today's policy.
        entry = (_context.current.get() or {}).get(wrapper.alias)
        keys = [] if entry is None else [k for k, _ in entry.wanted or () if k != ROLE]
        if keys and wrapper.session_state_policy() != "error":
            _context.record(wrapper.alias, dict.fromkeys(keys))
            _replay.forget(wrapper.lease_held_session(), keys)
        return None
    assert isinstance(values, dict)
    if not all(rules.covers(key) for key in values):
        return None
    _context.record(wrapper.alias, values)
    _replay.forget(wrapper.lease_held_session(), list(values))
    return values
