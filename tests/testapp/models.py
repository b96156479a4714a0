from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "testapp"


class Ledger(models.Model):
    """Rows the fault tests write and later verify."""

    key = models.CharField(max_length=64, unique=True)
    committed = models.BooleanField(default=True)

    class Meta:
        app_label = "testapp"
