"""The verifier is a program of its own: no Django, nothing of the exchange."""

import subprocess
import sys

from django.conf import settings


def test_the_verifier_runs_without_django_or_the_exchange():
    code = (
        "import sys, trail_verify.cli, trail_verify.audit;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'config', 'core', 'accounts', 'market', 'billing', 'demo', 'agent'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=settings.BASE_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_console_script_answers_its_version():
    result = subprocess.run(
        [sys.executable, "-m", "trail_verify", "--version"],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("exchange-verify 1.0")
