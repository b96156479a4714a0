from django.contrib.gis.db import models


class City(models.Model):
    name = models.CharField(max_length=50)
    point = models.PointField(srid=4326)


class Zone(models.Model):
    name = models.CharField(max_length=50)
    area = models.PolygonField(srid=4326, null=True)
