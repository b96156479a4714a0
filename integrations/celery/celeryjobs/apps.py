from django.apps import AppConfig


class CeleryJobsConfig(AppConfig):
    name = "celeryjobs"
    default_auto_field = "django.db.models.BigAutoField"
