"""The real agent process against the real exchange (runserver on PostgreSQL)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from market.models import TelemetrySample
from tests.market.telemetry.conftest import node_with_token
from tests.support import free_port, wait_for_http

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(settings.BASE_DIR)


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_server(port: int, log) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": "", "DEBUG": "false"}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
    return server


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stored_seqs(node) -> list[int]:
    return list(
        TelemetrySample.objects.filter(node=node).order_by("seq").values_list("seq", flat=True)
    )


def _wait(condition, *, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_agent_buffers_through_an_outage_and_every_sample_is_stored_exactly_once(tmp_path):
    # given: a node, its token, the exchange and the agent reporting every 0.3 s
    node, token = node_with_token(gpu_count=2)
    port = free_port()
    server_log = (tmp_path / "server.log").open("w")
    agent_log = (tmp_path / "agent.log").open("w")
    server = _start_server(port, server_log)
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--simulate",
            "--gpus",
            "2",
            "--seed",
            "4",
            "--interval",
            "0.3",
            "--max-backoff",
            "0.5",
            "--state-dir",
            str(tmp_path / "state"),
            "--url",
            f"http://127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env={**os.environ, "EXCHANGE_NODE_TOKEN": token},
        stdout=agent_log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: len(_stored_seqs(node)) >= 6, what="first samples stored")
        # when: the exchange goes down for a while, then comes back
        _stop(server)
        before_outage = len(_stored_seqs(node))
        time.sleep(3)
        server = _start_server(port, server_log)
        _wait(lambda: len(_stored_seqs(node)) >= before_outage + 20, what="catch-up")
        agent.terminate()
        assert agent.wait(timeout=30) == 0
        # the agent's next run sends what it still had buffered
        finish = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent",
                "--simulate",
                "--gpus",
                "2",
                "--once",
                "--state-dir",
                str(tmp_path / "state"),
                "--url",
                f"http://127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env={**os.environ, "EXCHANGE_NODE_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert finish.returncode == 0, finish.stderr
    finally:
        if agent.poll() is None:
            _stop(agent)
        _stop(server)
    # then: every sample the agent numbered is stored exactly once, none lost
    log = (tmp_path / "agent.log").read_text()
    assert "exchange unavailable" in log
    seqs = _stored_seqs(node)
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == len(set(seqs)) > before_outage + 20
    assert "0 samples buffered" in finish.stderr
    node.refresh_from_db()
    assert node.last_seen_at is not None
