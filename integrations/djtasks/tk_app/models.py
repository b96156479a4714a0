"""What the actors write: a marker per message, to check commits from outside."""

from django.db import models


class Note(models.Model):
    marker = models.CharField(max_length=100, db_index=True)
