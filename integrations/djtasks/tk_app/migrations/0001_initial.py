"""The app's note table (shared by the task-queue projects)."""

from django.db import migrations

from integrations._common.notes import create_note


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [create_note()]
