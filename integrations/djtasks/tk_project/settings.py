"""Settings of the Django Tasks integration project, all from the environment.

Django Tasks with ``django-tasks-db``'s database backend and its
``db_worker`` (the ``django_tasks`` backport on Django 5.x).

The database, pool, ``application_name`` and leak log come from
:mod:`integrations._common.settings` (prefix ``TK``: ``TK_ENGINE``,
``TK_POOL_MAX_SIZE`` / ``TK_POOL_TIMEOUT``, ``TK_APP_NAME``, ``TK_LEAK_LOG``).
Besides those:

- ``TK_HOOKED``: ``0`` leaves out the hook-up (what the system check reports).
"""

from __future__ import annotations

import importlib.util
import os

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

ENGINE_KIND = common.engine_kind("TK")
DATABASES = common.databases("TK", app_name="pgrp-tasks")
LOGGING = common.leak_logging("TK")
#: The model the shared leak actors write to.
NOTE_MODEL = "tk_app.Note"

_builtin = importlib.util.find_spec("django.tasks") is not None
INSTALLED_APPS = [
    "django_pg_real_pool",
    *([] if _builtin else ["django_tasks"]),
    "django_tasks_db",
    # The documented one-line hook-up.
    *(
        ["django_pg_real_pool.tasks.RealPoolTasksConfig"]
        if os.environ.get("TK_HOOKED", "1") == "1"
        else []
    ),
    "tk_app",
]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
SECRET_KEY = "tasks-integration-only"
