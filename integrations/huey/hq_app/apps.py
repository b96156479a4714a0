from django.apps import AppConfig


class HqAppConfig(AppConfig):
    name = "hq_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import os

        # The documented one-line hook-up (HQ_HOOKED=0: what the check reports).
        if os.environ.get("HQ_HOOKED", "1") == "1":
            from huey.contrib.djhuey import HUEY

            from django_pg_real_pool.huey import install

            install(HUEY)
