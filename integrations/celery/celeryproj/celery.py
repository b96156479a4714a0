"""The Celery app: the one-line hookup is ``install(app)``."""

import os

from celery import Celery

from django_pg_real_pool.celery import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "celeryproj.settings")

app = Celery("celeryproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
if os.environ.get("PGRP_CELERY_ENGINE", "real") == "real":
    # Stock-engine runs (benchmarks) keep Celery's own behaviour to compare.
    install(app)
app.autodiscover_tasks()
