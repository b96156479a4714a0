"""A user engine on Django's native pool, as a project would write it."""

from django_pg_real_pool.compose import real_pool_wrapper

DatabaseWrapper = real_pool_wrapper("django.db.backends.postgresql")
