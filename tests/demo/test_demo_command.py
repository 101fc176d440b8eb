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
        while time.monotonic() < deadline and _count(database, DEMO_ORDERS + " <> 'filled'"):
            time.sleep(1)
        assert _count(database, DEMO_ORDERS + " = 'filled'") == 3
        assert _count(database, "SELECT COUNT(*) FROM market_lease") >= 3
        assert _count(database, "SELECT COUNT(*) FROM market_telemetrysample") > 0
        # the agents' tokens are in their environment, not on command lines `ps` shows
        assert _command_lines_with("--token", process.pid) == []
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


DEMO_ORDERS = (
    "SELECT COUNT(*) FROM market_order o JOIN accounts_organisation b ON b.id = o.buyer_id"
    " WHERE b.credit_code = '91330100716105852F' AND o.status"
)


def _command_lines_with(text: str, pgid: int) -> list[str]:
    found = []
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            if os.getpgid(int(proc)) != pgid:
                continue
            with open(f"/proc/{proc}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode()
        except (OSError, ProcessLookupError):
            continue
        if text in line:
            found.append(line)
    return found


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
