import django.contrib.gis.db.models.fields
from django.db import migrations


class Migration(migrations.Migration):
    """A spatial column added later: its GiST index comes with it."""

    dependencies = [("geo_app", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="zone",
            name="area",
            field=django.contrib.gis.db.models.fields.PolygonField(srid=4326, null=True),
        ),
    ]
