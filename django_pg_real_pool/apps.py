"""The optional Django app: ``INSTALLED_APPS += ["django_pg_real_pool"]``.

It adds the system checks to every ``manage.py check``, the ``pool_status``
management command, and starts the leak detector at start-up for aliases
that set ``OPTIONS["real_pool"]["leak_threshold"]``. The engines work without it.
"""

from __future__ import annotations

from django.apps import AppConfig


class DjangoPgRealPoolConfig(AppConfig):
    name = "django_pg_real_pool"
    label = "django_pg_real_pool"
    verbose_name = "django-pg-real-pool"

    def ready(self) -> None:
        from django.core import checks as django_checks

        from . import _leaks, checks

        # Not tagged "database": these read settings only, and since Django 6.0
        # database-tagged checks run only with `check --database`.
        django_checks.register(checks.check_databases, checks.TAG)
        django_checks.register(checks.check_integrations, checks.TAG)
        _leaks.watch_configured()
