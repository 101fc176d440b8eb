"""Production refuses to start with the demo Stripe keys or without the account
bank payouts are paid from (billing/checks.py)."""

import subprocess

import pytest

from tests.support import PRODUCTION_ENV, manage_check

STRIPE = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
REAL_LOOKING = {name: PRODUCTION_ENV[name] for name in STRIPE}
WITHOUT_STRIPE = {k: v for k, v in PRODUCTION_ENV.items() if k not in STRIPE}


def _check_deploy(**stripe: str) -> subprocess.CompletedProcess:
    return manage_check(WITHOUT_STRIPE | stripe)


def test_check_deploy_passes_in_production_with_real_looking_stripe_keys():
    result = _check_deploy(**REAL_LOOKING)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_WEBHOOK_SECRET", "whsec_local"),
        ("STRIPE_WEBHOOK_SECRET", ""),
        ("STRIPE_SECRET_KEY", "sk_test_local"),
        ("STRIPE_SECRET_KEY", ""),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_local"),
        ("STRIPE_PUBLISHABLE_KEY", "not-a-stripe-key"),
    ],
)
def test_check_deploy_fails_in_production_with_a_demo_or_empty_stripe_value(name, value):
    result = _check_deploy(**(REAL_LOOKING | {name: value}))

    assert result.returncode != 0
    assert name in result.stderr
    assert "billing.E00" in result.stderr


def test_check_deploy_fails_in_production_when_no_stripe_variable_is_set():
    result = _check_deploy()

    assert result.returncode != 0
    for name in REAL_LOOKING:
        assert name in result.stderr


def test_check_deploy_fails_in_production_without_the_payout_bank_account():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "PAYOUT_BANK_ACCOUNT"}
    result = manage_check(env)

    assert result.returncode != 0
    assert "billing.E011" in result.stderr and "PAYOUT_BANK_ACCOUNT" in result.stderr
