"""``ENGINE = "django_pg_real_pool.dj_db_conn_pool.tenants"``:
django-tenants' backend (on its ``ORIGINAL_BACKEND``)
with per-query release on django-db-connection-pool's pool (see ``django_pg_real_pool.compose``).
"""

from django_pg_real_pool.compose import real_pool_wrapper

__all__ = ["DatabaseWrapper"]

DatabaseWrapper = real_pool_wrapper("django_tenants.postgresql_backend", pool="dj_db_conn_pool")
