from django.db import models


class Note(models.Model):
    """A tenant's row (django-tenants) or an instrumented one (django-prometheus)."""

    text = models.CharField(max_length=100)
