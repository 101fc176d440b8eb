from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Connects the Celery signals that mark outbox rows completed.
        from core import outbox  # noqa: F401

        # Records the scheduled tasks' last success and failure.
        from core.scheduled_tasks import connect

        connect()
