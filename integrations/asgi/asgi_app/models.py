"""What the views read and write."""

from django.db import models


class Row(models.Model):
    name = models.CharField(max_length=64, unique=True)
    value = models.IntegerField(default=0)
