"""A user engine on django-db-connection-pool's pool, as a project would write it."""

from django_pg_real_pool.compose import real_pool_wrapper

DatabaseWrapper = real_pool_wrapper("django.db.backends.postgresql", pool="dj_db_conn_pool")
