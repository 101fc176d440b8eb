import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

from tests.support import free_port, wait_for_http


@pytest.mark.slow
@pytest.mark.integration
def test_demo_command_serves_home_sign_up_log_in_and_api_docs(tmp_path):
    # given: a fresh embedded database, as a newcomer's clean clone has
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/healthz", timeout=120, process=process)
        # when / then
        pages = {
            "/": "GPU",
            "/signup/": "csrfmiddlewaretoken",
            "/login/": "csrfmiddlewaretoken",
            "/api/docs/": "swagger",
        }
        for path, expected in pages.items():
            with urllib.request.urlopen(base + path, timeout=10) as response:  # noqa: S310
                assert response.status == 200
                assert expected in response.read().decode()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output
    assert "demo-password-2026" in output
    assert "Local fake Stripe (localstripe) at http://127.0.0.1:" in output
    assert process.returncode is not None
