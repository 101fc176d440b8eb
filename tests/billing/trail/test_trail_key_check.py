"""Production refuses to sign tree heads with the public demo key (billing/checks.py)."""

import subprocess

from django.conf import settings

from tests.support import PRODUCTION_ENV, manage_check

PRODUCTION = {k: v for k, v in PRODUCTION_ENV.items() if k != "TRAIL_SIGNING_KEY"}


def _check(**env: str) -> subprocess.CompletedProcess:
    return manage_check(PRODUCTION | env)


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
