"""The Django Tasks the end-to-end tests and the benchmark enqueue (``enqueue_tasks``).

The shared load task, probe and leak actors (:mod:`integrations._common.actors`)
as Django Tasks of this module. Results (and errors) are stored by the
database backend, where the sender reads them.
"""

from __future__ import annotations

from integrations._common import actors

try:  # Django 6.x
    from django.tasks import task
except ImportError:  # the backport on Django 5.x
    from django_tasks import task  # type: ignore[no-redef]

globals().update(actors.define(__name__, task))
