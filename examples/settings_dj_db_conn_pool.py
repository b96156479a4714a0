"""DATABASES for the engine over django-db-connection-pool (SQLAlchemy QueuePool).

pip install 'django-pg-real-pool[dj-db-conn-pool]'
"""

DATABASES = {
    "default": {
        "ENGINE": "django_pg_real_pool.dj_db_conn_pool",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0,
        # django-db-connection-pool's options. PRE_PING defaults to False with this
        # engine: borrowing checks connections cheaply itself.
        "POOL_OPTIONS": {"POOL_SIZE": 10, "MAX_OVERFLOW": 0, "TIMEOUT": 10, "RECYCLE": 900},
        "OPTIONS": {"real_pool": {"session_state": "pin"}},
    }
}
