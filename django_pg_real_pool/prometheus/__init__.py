"""``ENGINE = "django_pg_real_pool.prometheus"``: see ``base.py``."""
