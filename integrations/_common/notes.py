"""The note table each project's app keeps (``<app>_note``), written once.

Each app's ``models.Note`` has one field, ``marker`` (what a leak actor
wrote, to check commits from outside); its ``0001_initial`` migration is
:func:`create_note`.
"""

from __future__ import annotations

from django.db import migrations, models


def create_note() -> migrations.CreateModel:
    """The operation creating ``Note`` (``id``, indexed ``marker``)."""
    return migrations.CreateModel(
        name="Note",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("marker", models.CharField(db_index=True, max_length=100)),
        ],
    )
