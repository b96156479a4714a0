"""A Django project whose Celery workers run on django_pg_real_pool.

Importing the project imports its Celery app (the usual Django + Celery
layout), so ``manage.py check`` sees it.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
