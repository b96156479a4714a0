"""``pinned()``: keep one connection for a block of code."""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections


class pinned(ContextDecorator):  # noqa: N801 - reads like contextlib's helpers
    """Hold one connection of ``using`` for the block (context manager or decorator).

    Inside the block every query of this thread runs on the same backend, so
    session state (``SET``, temp tables, session advisory locks, ``LISTEN``,
    prepared statements) behaves as with a dedicated connection. Blocks nest;
    the connection is reset (``DISCARD ALL``) when the outermost one ends and
    then goes back to the pool. With any other engine it does nothing.

    Usage::

        with pinned():
            cursor.execute("SET LOCAL ...")

        @pinned(using="replica")
        def report(): ...
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using or DEFAULT_DB_ALIAS

    def __enter__(self) -> pinned:
        wrapper = connections[self.using]
        pin = getattr(wrapper, "lease_pin", None)
        if pin is not None:
            pin()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        wrapper = connections[self.using]
        unpin = getattr(wrapper, "lease_unpin", None)
        if unpin is not None:
            unpin()
