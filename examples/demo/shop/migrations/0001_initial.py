from django.db import migrations, models

PRODUCTS = 1000


def seed(apps, schema_editor):
    product = apps.get_model("shop", "Product")
    product.objects.using(schema_editor.connection.alias).bulk_create(
        product(name=f"Product {i}", price_cents=100 + i) for i in range(1, PRODUCTS + 1)
    )


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
                ("price_cents", models.IntegerField()),
                ("views", models.IntegerField(default=0)),
            ],
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
