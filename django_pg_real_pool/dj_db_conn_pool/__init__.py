"""``ENGINE = "django_pg_real_pool.dj_db_conn_pool"``: the same release mechanism
over django-db-connection-pool's SQLAlchemy ``QueuePool``."""
