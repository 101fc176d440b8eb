"""System checks of core's settings."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility, deploy=False)
def simulated_clock_not_in_production(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A simulated clock in production would bill, meter and expire on a made-up time."""
    if settings.PRODUCTION and settings.EXCHANGE_CLOCK:
        return [
            checks.Error(
                "EXCHANGE_CLOCK is set in production: the exchange must run on the real clock.",
                hint="Unset EXCHANGE_CLOCK; it is for the demo and the simulator only.",
                id="core.E001",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility, deploy=False)
def redis_in_production(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Without REDIS_URL the exchange runs every task inside the request and
    counts throttles and log-in lockouts per process: fine for the demo, a
    silent loss of the scheduled close, the workers and the limits in production."""
    if settings.PRODUCTION and not settings.REDIS_URL:
        return [
            checks.Error(
                "REDIS_URL is not set in production: tasks would run in the web request and "
                "throttles and lock-outs would count per process.",
                hint="Set REDIS_URL (the broker and the shared cache); see the README's production section.",
                id="core.E002",
            )
        ]
    return []
