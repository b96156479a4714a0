"""Settings of the huey integration project, all from the environment.

The database, pool, ``application_name`` and leak log come from
:mod:`integrations._common.settings` (prefix ``HQ``: ``HQ_ENGINE``,
``HQ_POOL_MAX_SIZE`` / ``HQ_POOL_TIMEOUT``, ``HQ_APP_NAME``, ``HQ_LEAK_LOG``).
Besides those:

- ``HQ_REDIS_URL``: the Redis server of huey's queue and result store.
- ``HQ_HOOKED``: ``0`` leaves out the hook-up (what the system check reports).
"""

from __future__ import annotations

import os

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

ENGINE_KIND = common.engine_kind("HQ")
DATABASES = common.databases("HQ", app_name="pgrp-huey")
LOGGING = common.leak_logging("HQ")
#: The model the shared leak actors write to.
NOTE_MODEL = "hq_app.Note"

INSTALLED_APPS = ["django_pg_real_pool", "huey.contrib.djhuey", "hq_app"]
SECRET_KEY = "huey-integration-only"

HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": "pgrp-huey",
    "url": os.environ.get("HQ_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "immediate": False,
    "results": True,
    "store_none": True,
}
