"""Version requirements, checked when Django first loads an engine."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

MIN_DJANGO = (5, 1)


def check_django_version(version: tuple[object, ...]) -> None:
    """Refuse Django < 5.1: the native pool this engine builds on came in 5.1."""
    major, minor = int(str(version[0])), int(str(version[1]))
    if (major, minor) < MIN_DJANGO:
        raise ImproperlyConfigured(
            f"django_pg_real_pool needs Django >= {MIN_DJANGO[0]}.{MIN_DJANGO[1]} (its native "
            f"connection pool); this is Django {major}.{minor}. Upgrade Django, e.g. "
            "pip install 'Django>=5.2'."
        )


def check_psycopg3(is_psycopg3: bool) -> None:
    """Refuse psycopg2: pooling needs psycopg 3 and psycopg_pool."""
    if not is_psycopg3:
        raise ImproperlyConfigured(
            "django_pg_real_pool needs psycopg 3, but Django loaded psycopg2 (psycopg 3 is "
            "not installed or failed to import). Install it: pip install 'psycopg[pool]' "
            "(or 'psycopg[binary,pool]')."
        )
