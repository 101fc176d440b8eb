"""Production refuses to sign tree heads with the public demo key (billing/checks.py)."""

import subprocess
import sys

from django.conf import settings

PRODUCTION = {
    "EXCHANGE_ENV": "production",
    "SECRET_KEY": "c" * 20 + "-production-secret-key-for-the-trail-check-" + "x" * 10,
    "ALLOWED_HOSTS": "exchange.example.cn",
    "DATABASE_URL": "sqlite:////tmp/trail-check.sqlite3",
    "PATH": "/usr/bin:/bin",
    "STRIPE_SECRET_KEY": "sk_live_51Hx" + "k" * 90,
    "STRIPE_PUBLISHABLE_KEY": "pk_live_51Hx" + "p" * 90,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 32,
}


def _check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=PRODUCTION | env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )


def test_production_refuses_the_demo_trail_key():
    result = _check(TRAIL_SIGNING_KEY=settings.TRAIL_DEMO_SIGNING_KEY)

    assert result.returncode != 0
    assert "billing.E010" in result.stderr
    assert "TRAIL_SIGNING_KEY is the public demo key" in result.stderr


def test_production_refuses_to_start_without_a_trail_key_of_its_own():
    assert "billing.E010" in _check().stderr


def test_production_takes_a_key_of_its_own_and_refuses_a_malformed_one():
    assert _check(TRAIL_SIGNING_KEY="7c" * 32).returncode == 0
    malformed = _check(TRAIL_SIGNING_KEY="not-hex")
    assert malformed.returncode != 0
    assert "TRAIL_SIGNING_KEY must be 64 hex digits" in malformed.stderr
