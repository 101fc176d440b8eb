from django.apps import AppConfig
from django.urls import register_converter


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.conf import settings

        from core import checks, clock  # noqa: F401 - checks registers itself

        if settings.EXCHANGE_CLOCK:
            # Every process (web, worker, beat, commands) starts on the simulated clock.
            clock.install(clock.from_spec(settings.EXCHANGE_CLOCK))
        from core.converters import MonthConverter, YearConverter

        register_converter(YearConverter, "year")
        register_converter(MonthConverter, "month")
        # Connects the Celery signals that mark outbox rows completed.
        from core import outbox  # noqa: F401

        # Records the scheduled tasks' last success and failure.
        from core.scheduled_tasks import connect

        connect()
