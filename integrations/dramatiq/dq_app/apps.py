from django.apps import AppConfig


class DqAppConfig(AppConfig):
    name = "dq_app"
    default_auto_field = "django.db.models.BigAutoField"
