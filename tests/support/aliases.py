"""An extra ``DATABASES`` alias for one test, on the test database."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections


@contextmanager
def extra_alias(alias: str, like: str, **overrides: Any) -> Iterator[str]:
    """Add ``alias`` (a copy of ``like``'s settings with ``overrides``) to
    ``settings.DATABASES``/``connections`` for the block, then remove it and
    close its pool. Its sessions are named ``pgrp-<alias>`` on the server, as
    the test settings name every alias's (``pgstat.sessions(admin, alias)``)."""
    settings_dict = copy.deepcopy(connections.settings[like])
    options = settings_dict.get("OPTIONS") or {}
    settings_dict["OPTIONS"] = {**options, "application_name": f"pgrp-{alias}"}
    settings_dict.update(overrides)
    # connections.settings is settings.DATABASES: one assignment serves both.
    connections.settings[alias] = settings_dict
    try:
        yield alias
    finally:
        if hasattr(connections._connections, alias):
            wrapper = connections[alias]
            wrapper.close()
            close_pool = getattr(wrapper, "close_pool", None)
            if close_pool is not None:
                close_pool()
            del connections[alias]
        del connections.settings[alias]
