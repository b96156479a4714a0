"""WSGI entry point: ``gunicorn examples.demo.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo.settings")

application = get_wsgi_application()
