"""``ENGINE = "django_pg_real_pool.tenants"``: see ``base.py``."""
