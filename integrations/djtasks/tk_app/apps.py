from django.apps import AppConfig


class TkAppConfig(AppConfig):
    name = "tk_app"
    default_auto_field = "django.db.models.BigAutoField"
