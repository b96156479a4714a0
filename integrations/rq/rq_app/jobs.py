"""The jobs the end-to-end tests and the benchmark enqueue (``rq_app.jobs.<name>``).

The shared load task, probe and leak actors (:mod:`integrations._common.actors`):
RQ runs plain functions found by import path, so this module only names them.
Results (and errors) go to RQ's results in Redis, so the sender sees exactly
what happened.
"""

from __future__ import annotations

from integrations._common.actors import (  # noqa: F401 - enqueued by path
    leak_atomic_left_open,
    leak_autocommit_off,
    leak_open_cursor,
    leak_pinned_exception,
    leak_search_path,
    load,
    probe,
    raise_in_atomic,
)
