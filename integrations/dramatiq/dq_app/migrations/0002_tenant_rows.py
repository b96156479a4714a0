"""The tenant-per-message table under row-level security (shared by the task-queue projects)."""

from django.db import migrations

from integrations._common.tenancy import create_tenant_rows


class Migration(migrations.Migration):
    dependencies = [("dq_app", "0001_initial")]

    operations = [create_tenant_rows()]
