"""RQ hook-up: worker classes that run every job inside the task bracket.

One setting with django-rq::

    RQ = {"WORKER_CLASS": "django_pg_real_pool.rq.RealPoolWorker"}

(or ``rqworker --worker-class django_pg_real_pool.rq.RealPoolWorker``; plain
RQ: ``rq worker --worker-class ...``). :class:`RealPoolSimpleWorker` is the
same for RQ's ``SimpleWorker`` (jobs in the worker's own process).

RQ has no signals: the classes override ``perform_job``, which RQ runs in the
process and thread that run the job (the work horse of the forking
``Worker``, the worker itself for ``SimpleWorker``), around the job, its
success or failure callback and the bookkeeping after it:

* before the job the thread must be clean (repaired and reported if not);
* after it, on every exit (success, exception, job timeout), the bracket of
  :mod:`._bracket` repairs and reports what the job leaked;
* a forking work horse then closes its pools before RQ's ``os._exit()``:
  its sessions end cleanly instead of at socket close. The horse never uses
  the parent's pooled connections (the fork hook of :mod:`._fork` drops them
  in the child without I/O), so the parent's pool outlives any number of
  jobs;
* at worker shutdown (``teardown``) the worker's own pools close.

Strict mode is not offered: RQ stores a job's result before ``perform_job``
returns, so the bracket cannot fail the job. Leaks are repaired and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rq.worker import SimpleWorker, Worker

from . import _bracket

__all__ = ["RealPoolSimpleWorker", "RealPoolWorker", "RealPoolWorkerMixin"]

logger = logging.getLogger(__name__)

WORKER_CLASS_PATH = "django_pg_real_pool.rq.RealPoolWorker"


class RealPoolWorkerMixin:
    """Mixed before an RQ worker class: the task bracket around each job."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        label = str(getattr(job, "func_name", None) or "rq job")
        _guarded(_bracket.begin, label, job.id)
        try:
            performed: bool = super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        finally:
            _guarded(_bracket.end, label, job.id)
            if getattr(self, "is_horse", False):
                # RQ ends the horse with os._exit(): no interpreter shutdown.
                _guarded(_bracket.close_pools)
        return performed

    def teardown(self) -> None:
        try:
            # RQ's own teardown can be cut short: a second SIGTERM (cold
            # shutdown) raises SystemExit in it, e.g. while it waits for
            # redis-py's pub/sub thread.
            super().teardown()  # type: ignore[misc]
        finally:
            if not getattr(self, "is_horse", False):
                _guarded(_bracket.release_thread, "rq worker")
                _guarded(_bracket.close_pools)


class RealPoolWorker(RealPoolWorkerMixin, Worker):  # type: ignore[misc]
    """RQ's forking ``Worker`` (a work horse per job) with the task bracket."""


class RealPoolSimpleWorker(RealPoolWorkerMixin, SimpleWorker):  # type: ignore[misc]
    """RQ's ``SimpleWorker`` (jobs in the worker's process) with the task bracket."""


def _guarded(func: Callable[..., Any], *args: Any) -> None:
    # A bug here must never cost the job its result nor kill the worker.
    try:
        func(*args)
    except Exception:
        logger.exception("django_pg_real_pool: %s failed in the RQ worker", func.__name__)
