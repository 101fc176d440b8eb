"""Production refuses to start with the demo Stripe keys (billing/checks.py)."""

import subprocess
import sys

import pytest
from django.conf import settings

REAL_LOOKING = {
    "STRIPE_SECRET_KEY": "sk_live_51Hx" + "k" * 90,
    "STRIPE_PUBLISHABLE_KEY": "pk_live_51Hx" + "p" * 90,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 32,
    "TRAIL_SIGNING_KEY": "5a" * 32,  # not the demo key (billing.trail's own test refuses that)
}


def _check_deploy(**stripe: str) -> subprocess.CompletedProcess:
    env = {
        "EXCHANGE_ENV": "production",
        "SECRET_KEY": "b" * 20 + "-production-secret-key-for-the-stripe-check-" + "y" * 10,
        "ALLOWED_HOSTS": "exchange.example.cn",
        "DATABASE_URL": "sqlite:////tmp/stripe-check.sqlite3",
        "PATH": "/usr/bin:/bin",
        **stripe,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )


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
