"""What the engine does when a statement leaves session state.

:func:`react` runs for each statement that :func:`._session.session_state_of`
flags (the cursors run the check inline and call ``LeaseMixin._lease_inspect``
on a hit). It applies ``OPTIONS["real_pool"]["session_state"]`` -- pin the
connection to the thread (and warn once per call site), raise, or let it go --
and marks the connection for a reset before its next borrower in every case.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import django

from ._replay_sql import record
from ._session import session_state_of
from .errors import SessionStateError

if TYPE_CHECKING:
    from ._lease import LeaseMixin

logger = logging.getLogger("django_pg_real_pool")

_PACKAGE_DIR = os.path.dirname(__file__)
_DJANGO_DIR = os.path.dirname(django.__file__)

#: Per process: call sites already warned about.
warned_sites: set[tuple[str, int]] = set()


def react(wrapper: LeaseMixin, sql: Any, params: Any = None) -> dict[str, str | None] | None:
    """Apply the session-state policy of ``wrapper``'s alias to ``sql``.

    Returns what the ``replay`` option recorded instead (the cursor confirms
    it once the statement ran), else ``None``.
    """
    kind = session_state_of(sql)
    if kind is None:
        return None
    policy = wrapper.session_state_policy()
    if policy is None:
        return None
    if policy == "pinned":
        wrapper.mark_session_state(kind, sticky=False)
        return None
    # Under the replay option: the caller's context state, not a pin.
    replay = wrapper.lease_replay_rules()
    if replay is not None and (recorded := record(wrapper, sql, params, replay)) is not None:
        return recorded
    if policy == "error":
        raise SessionStateError(
            f"{kind} statement on alias {wrapper.alias!r} outside pinned(): its effect "
            f"would outlive this query's connection. Statement: {_shorten(sql)!r}. "
            "Wrap the code in django_pg_real_pool.pinned(), or set "
            f"DATABASES[{wrapper.alias!r}]['OPTIONS']['real_pool']['session_state'] "
            "to 'pin'."
        )
    # Even when ignored, state never reaches the next borrower.
    wrapper.mark_session_state(kind, sticky=policy != "ignore")
    if policy == "ignore":
        return None
    site = _call_site()
    if site not in warned_sites:
        warned_sites.add(site)
        logger.warning(
            "%s statement on alias %r outside pinned() at %s:%d: the connection stays "
            "with this thread until the request or task ends, then is reset. Use "
            "django_pg_real_pool.pinned() to scope it.",
            kind,
            wrapper.alias,
            site[0],
            site[1],
        )
    return None


def _shorten(sql: Any, limit: int = 120) -> str:
    text = " ".join(str(sql).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call_site() -> tuple[str, int]:
    """The first frame outside Django and this package."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith((_PACKAGE_DIR, _DJANGO_DIR)):
            return (filename, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return ("<unknown>", 0)
