from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import checks  # noqa: F401 - registers billing's system checks

        # Celery autodiscovery finds billing.tasks only; register the subsidy package's too.
        from billing.subsidy import tasks  # noqa: F401
        from billing.trail import tasks as trail_tasks  # noqa: F401
