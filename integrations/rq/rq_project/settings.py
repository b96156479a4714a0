"""Settings of the RQ integration project (django-rq), all from the environment.

The database, pool, ``application_name`` and leak log come from
:mod:`integrations._common.settings` (prefix ``RQP``: ``RQP_ENGINE``,
``RQP_POOL_MAX_SIZE`` / ``RQP_POOL_TIMEOUT``, ``RQP_APP_NAME``,
``RQP_LEAK_LOG``). Besides those:

- ``RQP_REDIS_URL``: the Redis server of the queue and the results.
- ``RQP_WORKER_CLASS``: ``RQ["WORKER_CLASS"]`` (default: this package's
  forking worker; ``rq.worker.Worker`` is what the system check reports).
- ``RQP_PARENT_LOG``: a file the parent-probing worker class appends the
  parent's backend pid to, before each fork.
- ``RQP_FAULTHANDLER``: ``1`` dumps every thread's stack on SIGUSR2 (to find
  where a worker hangs).
"""

from __future__ import annotations

import os

from integrations._common import settings as common
from integrations._common.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ  # noqa: F401

ENGINE_KIND = common.engine_kind("RQP")
DATABASES = common.databases("RQP", app_name="pgrp-rq")
LOGGING = common.leak_logging("RQP")
#: The model the shared leak actors write to.
NOTE_MODEL = "rq_app.Note"

INSTALLED_APPS = ["django_pg_real_pool", "django_rq", "rq_app"]
SECRET_KEY = "rq-integration-only"

RQ_QUEUES = {"default": {"URL": os.environ.get("RQP_REDIS_URL", "redis://127.0.0.1:6379/0")}}
# The documented one-line hook-up.
RQ = {"WORKER_CLASS": os.environ.get("RQP_WORKER_CLASS", "django_pg_real_pool.rq.RealPoolWorker")}

if os.environ.get("RQP_FAULTHANDLER"):
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR2, all_threads=True)
