"""``ENGINE = "django_pg_real_pool.dj_db_conn_pool.prometheus"``:
django-prometheus' instrumented PostgreSQL backend
with per-query release on django-db-connection-pool's pool (see ``django_pg_real_pool.compose``).
"""

from django_pg_real_pool.compose import real_pool_wrapper

__all__ = ["DatabaseWrapper"]

DatabaseWrapper = real_pool_wrapper(
    "django_prometheus.db.backends.postgresql", pool="dj_db_conn_pool"
)
