"""``ENGINE = "django_pg_real_pool.postgis"``: see ``base.py``."""
