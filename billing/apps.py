from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Celery autodiscovery finds billing.tasks only; register the voucher tasks too.
        from billing import checks, tasks_vouchers  # noqa: F401
