from django.db import models


class Entry(models.Model):
    """A row a task writes: committed or not is what the tests check."""

    key = models.CharField(max_length=100, unique=True)
    created = models.DateTimeField(auto_now_add=True)
