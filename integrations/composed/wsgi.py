"""WSGI entry point of the tenant web project (``gunicorn integrations.composed.wsgi``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations.composed.settings")
application = get_wsgi_application()
