"""DATABASES for the native-pool engine (Django 5.1+): the recommended set-up."""

DATABASES = {
    "default": {
        "ENGINE": "django_pg_real_pool",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": "",  # from your secret store
        "HOST": "127.0.0.1",
        "PORT": "5432",
        # The pool keeps connections open; Django must not.
        "CONN_MAX_AGE": 0,
        # Optional: a round trip before reusing a connection idle > health_check_idle s.
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            # psycopg_pool.ConnectionPool arguments, as with Django's own pool.
            "pool": {"min_size": 2, "max_size": 10, "timeout": 10},
            # This engine's own options (all optional).
            "real_pool": {
                "session_state": "pin",  # or "error" / "ignore"
                "health_check_idle": 10,  # seconds
                "leak_threshold": None,  # e.g. 5: report connections held > 5 s
            },
        },
    }
}
