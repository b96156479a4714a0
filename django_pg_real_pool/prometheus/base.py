"""``ENGINE = "django_pg_real_pool.prometheus"``:
django-prometheus' instrumented PostgreSQL backend
with per-query release on Django's native pool (see ``django_pg_real_pool.compose``).
"""

from django_pg_real_pool.compose import real_pool_wrapper

__all__ = ["DatabaseWrapper"]

DatabaseWrapper = real_pool_wrapper("django_prometheus.db.backends.postgresql")
