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


@register("billing", deploy=False)
def trail_signing_key_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Anyone can sign tree heads with the demo key: an authority could then be
    shown any history. In production the trail must sign with a key of its own."""
    if not settings.PRODUCTION or settings.TRAIL_SIGNING_KEY != settings.TRAIL_DEMO_SIGNING_KEY:
        return []
    return [
        Error(
            "TRAIL_SIGNING_KEY is the public demo key in production.",
            hint="Set TRAIL_SIGNING_KEY to 64 hex digits of your own "
            '(python -c "import secrets; print(secrets.token_hex(32))") and publish its '
            "public key (/api/v1/trail/public-key/) to the authorities.",
            id="billing.E010",
        )
    ]


@register("billing", deploy=False)
def payout_bank_account_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Bank-transfer payouts go out as a batch file whose paying-account column is
    PAYOUT_BANK_ACCOUNT: empty in production, the bank would refuse every row of
    a file finance has already been told to upload."""
    if not settings.PRODUCTION or settings.PAYOUT_BANK_ACCOUNT.strip():
        return []
    return [
        Error(
            "PAYOUT_BANK_ACCOUNT is empty in production.",
            hint="Set PAYOUT_BANK_ACCOUNT to the platform's own account number, the one the "
            "bank batch files of provider payouts are paid from.",
            id="billing.E011",
        )
    ]
