"""Wrappers as the tests use them: a released check, extra wrappers, a holder."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from django.db import connections
from django.db.utils import load_backend

from tests.support.pgstat import pool_counts, wait_until

#: Per engine alias, the alias of the same engine whose pool has ONE connection.
SINGLE = {"default": "single", "djpool": "single_dj"}


def assert_released(alias: str) -> None:
    """``alias``'s wrapper holds nothing and every pooled connection is back."""
    wrapper = connections[alias]
    assert wrapper.connection is None, wrapper.lease_holders()
    # A discarded connection is replaced by the pool's worker thread: allow
    # that to finish before counting.
    settled = wait_until(lambda: pool_counts(alias)[0] == pool_counts(alias)[1], timeout=5)
    size, idle = pool_counts(alias)
    assert settled, f"{size - idle} connection(s) still out of the pool"


def make_wrapper(engine: str, alias: str, **overrides: Any) -> Any:
    """A wrapper of ``engine`` on the test database, outside ``connections``."""
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings["ENGINE"] = engine
    settings["OPTIONS"] = {"application_name": f"pgrp-{alias}"}
    settings.update(overrides)
    return load_backend(engine).DatabaseWrapper(settings, alias)


class HoldConnection:
    """Hold ``wrapper``'s connection like an open atomic() block would."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper

    def __enter__(self) -> None:
        self.wrapper.set_autocommit(False)

    def __exit__(self, *exc: object) -> None:
        self.wrapper.rollback()
        self.wrapper.set_autocommit(True)


def add_alias(alias: str, entry: dict[str, Any]) -> None:
    """Make ``alias`` a configured database for the rest of the run (Django
    fills in the defaults, as for ``settings.DATABASES``)."""
    configured = connections.configure_settings(
        {"default": dict(connections.settings["default"]), alias: entry}
    )
    connections.settings[alias] = configured[alias]


def remove_aliases(aliases: Iterable[str]) -> None:
    """Close ``aliases``' wrappers and pools and forget the aliases."""
    for alias in aliases:
        wrapper: Any = connections[alias]
        wrapper.close()
        wrapper.close_pool()
        del connections[alias]
        del connections.settings[alias]
