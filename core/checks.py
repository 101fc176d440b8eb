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
