import os
import signal
import sqlite3
import subprocess
import sys
import time
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
        [
            sys.executable,
            "manage.py",
            "demo",
            "--port",
            str(port),
            "--agent-state-dir",
            str(tmp_path / "agents"),
        ],
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
        # simulated agents on the demo nodes post real telemetry to the running
        # server, which brings their nodes online, and the demo buyer's orders fill
        database = tmp_path / "demo.sqlite3"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _count(
            database, "SELECT COUNT(*) FROM market_order WHERE status <> 'filled'"
        ):
            time.sleep(1)
        assert _count(database, "SELECT COUNT(*) FROM market_order WHERE status = 'filled'") == 3
        assert _count(database, "SELECT COUNT(*) FROM market_lease") >= 3
        assert _count(database, "SELECT COUNT(*) FROM market_telemetrysample") > 0
    finally:
        # `kill` on the demo alone must stop everything it started
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        leftovers = _group_alive(process.pid)
        if leftovers:
            os.killpg(process.pid, signal.SIGKILL)
    assert not leftovers, "the demo left processes running (agents or localstripe)"
    assert f"http://127.0.0.1:{port}/" in output
    assert "demo-password-2026" in output
    assert "Local fake Stripe (localstripe) at http://127.0.0.1:" in output
    assert "Simulated node agents:" in output
    assert process.returncode is not None


def _count(database, sql: str) -> int:
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute(sql).fetchone()[0]


def _group_alive(pgid: int, *, wait: float = 15.0) -> bool:
    """Whether any process of the group is still running after `wait` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True
