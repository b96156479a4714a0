from django.apps import AppConfig


class RqAppConfig(AppConfig):
    name = "rq_app"
    default_auto_field = "django.db.models.BigAutoField"
