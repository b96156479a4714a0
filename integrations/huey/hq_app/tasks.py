"""The tasks the end-to-end tests and the benchmark enqueue (``hq_app.tasks.<name>``).

The shared load task, probe and leak actors (:mod:`integrations._common.actors`)
as huey tasks. Results (and errors) go to huey's Redis result store, so the
sender sees exactly what happened.
"""

from __future__ import annotations

from django.conf import settings
from huey.contrib.djhuey import db_task, task

from integrations._common import actors

if settings.ENGINE_KIND == "stock":
    # The stock engine needs django-huey's db_task (close_old_connections()
    # around each task) to give a connection back at all; this engine's
    # bracket does that and more.
    task = db_task

globals().update(actors.define(__name__, task()))
