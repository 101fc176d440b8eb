from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"
    verbose_name = "Market"

    def ready(self) -> None:
        # Celery autodiscovery finds market.tasks only; register the telemetry package's too.
        from django.db.models.signals import post_delete, post_save

        from market.catalogue import catalogue_changed
        from market.models import GPUModel
        from market.telemetry import tasks  # noqa: F401

        post_save.connect(catalogue_changed, sender=GPUModel, dispatch_uid="catalogue-saved")
        post_delete.connect(catalogue_changed, sender=GPUModel, dispatch_uid="catalogue-deleted")
