from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"
    verbose_name = "Market"

    def ready(self) -> None:
        # Celery autodiscovery finds market.tasks only; register the telemetry package's too.
        from market.telemetry import tasks  # noqa: F401
