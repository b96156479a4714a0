"""The demo behind ``make demo``: a small Django shop served by gunicorn (gthread),
loaded over HTTP, once on Django's stock pool and once on django_pg_real_pool."""
