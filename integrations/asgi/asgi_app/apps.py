from django.apps import AppConfig


class AsgiAppConfig(AppConfig):
    name = "asgi_app"
    default_auto_field = "django.db.models.BigAutoField"
