"""System checks of billing's settings.

In production the exchange must not take card payments or webhooks with the
public demo keys: anyone can sign a `payment_intent.succeeded` with the demo
webhook secret. An error here stops `check`, `check --deploy`, `migrate` (which
`make run-web` runs before gunicorn) and `runserver`.
"""

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

DEMO_STRIPE_VALUES = {
    "STRIPE_SECRET_KEY": ("sk_test_local", ("sk_", "rk_")),
    "STRIPE_PUBLISHABLE_KEY": ("pk_test_local", ("pk_",)),
    "STRIPE_WEBHOOK_SECRET": ("whsec_local", ("whsec_",)),
}


@register("billing", deploy=False)
def stripe_keys_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    if not settings.PRODUCTION:
        return []
    errors: list[CheckMessage] = []
    for number, (name, (demo, prefixes)) in enumerate(DEMO_STRIPE_VALUES.items(), start=1):
        value = getattr(settings, name, "") or ""
        if not value or value == demo or not value.startswith(prefixes):
            errors.append(
                Error(
                    f"{name} is the demo default, empty or not a Stripe value in production.",
                    hint=f"Set {name} to your Stripe account's value "
                    f"(starting with {' or '.join(prefixes)}).",
                    id=f"billing.E00{number}",
                )
            )
    return errors
