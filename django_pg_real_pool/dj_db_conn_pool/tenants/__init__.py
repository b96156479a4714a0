"""``ENGINE = "django_pg_real_pool.dj_db_conn_pool.tenants"``: see ``base.py``."""
